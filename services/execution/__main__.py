from services.execution.service import ExecutionService
from shared.service import main

main(ExecutionService)
