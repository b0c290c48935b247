from services.state.service import StateService
from shared.service import main

main(StateService)
