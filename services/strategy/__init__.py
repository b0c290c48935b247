"""Strategy workers: run bots claimed by lease and send their intents to execution."""
