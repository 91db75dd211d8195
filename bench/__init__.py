"""Load-test harness: simulated waiting-room clients over the public WS + REST interfaces."""
