from services.strategy.service import StrategyService
from shared.service import main

main(StrategyService)
