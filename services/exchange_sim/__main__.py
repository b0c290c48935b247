from services.exchange_sim.service import ExchangeSimService
from shared.service import main

main(ExchangeSimService)
