"""``python -m services.exchange_sim``: check the SIM_* extras, then run the service."""

import sys

from services.exchange_sim.service import ExchangeSimService
from services.exchange_sim.settings import load_sim_settings
from shared.errors import ConfigError
from shared.service import main

try:
    load_sim_settings()
except ConfigError as exc:
    print(f"exchange_sim: {exc}", file=sys.stderr)
    sys.exit(2)
main(ExchangeSimService)
