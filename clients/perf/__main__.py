from clients.perf.cli import main

main()
