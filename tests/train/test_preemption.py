"""SIGTERM inside the loop: a flag the loop polls, handed on when nobody acted on it."""

import os
import signal
import time

import pytest

from jaxssl.train import preemption


def test_a_sigterm_the_loop_did_not_act_on_goes_to_the_previous_handler():
  received = []
  handler = lambda signum, frame: received.append(signum)
  previous = signal.signal(signal.SIGTERM, handler)

  def send():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # Python runs the handler between bytecodes

  try:
    with preemption.SigtermWatch(None) as watch:  # the block ends normally: handed on once
      send()
      assert watch.requested and received == []
    assert received == [signal.SIGTERM]
    with pytest.raises(preemption.Preempted):  # acted on (the loop raised): not handed on
      with preemption.SigtermWatch(None):
        send()
        raise preemption.Preempted(3)
    assert received == [signal.SIGTERM]
    with preemption.SigtermWatch(None, hand_on=False):  # an error is on its way out: kept
      send()
    assert received == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is handler  # restored
  finally:
    signal.signal(signal.SIGTERM, previous)
