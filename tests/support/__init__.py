"""What the test modules share: the servers and processes they run, fakes of
the providers, the gateway set up as the tests use it, polling, the planner
walk and the crash and fuzz harnesses. Test modules import from here (and
conftest's fixtures), never from one another."""
