from services.bus.service import BusService
from shared.service import main

main(BusService)
