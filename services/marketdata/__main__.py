from services.marketdata.service import MarketdataService
from shared.service import main

main(MarketdataService)
