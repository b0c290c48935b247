from services.gateway.service import GatewayService
from shared.service import main

main(GatewayService)
