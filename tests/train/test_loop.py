"""The loop's metric check (a non-finite step stops the run with an error that names the
step and a remedy fitting the run's optimizer settings) and its SIGTERM handler."""

import os
import signal
import time

import numpy as np
import pytest
from clu import metric_writers

from jaxssl.train import loop


@pytest.mark.parametrize('grad_clip_norm, remedy', [
    (0.0, 'lower optim.learning_rate or enable optim.grad_clip_norm)'),
    (1.0, 'lower optim.learning_rate or optim.grad_clip_norm, now 1)'),
    (0.25, 'lower optim.learning_rate or optim.grad_clip_norm, now 0.25)'),
])
def test_non_finite_metrics_name_the_step_and_a_remedy_for_the_clipping_setting(
    grad_clip_norm, remedy):
  pending = [(7, {'loss': np.float32(2.0)}), (8, {'loss': np.float32(np.inf)})]
  with pytest.raises(FloatingPointError) as e:
    loop._flush(pending, metric_writers.MultiWriter([]), elapsed_s=1.0, tokens_per_step=0,
                examples_per_step=0, grad_clip_norm=grad_clip_norm)
  assert str(e.value) == ('non-finite train/loss=inf at step 8; no checkpoint holds a '
                          f'non-finite state ({remedy}')


def test_finite_metrics_are_averaged_and_rated():
  pending = [(1, {'loss': np.float32(2.0)}), (2, {'loss': np.float32(4.0)})]
  summary, streak = loop._flush(pending, metric_writers.MultiWriter([]), elapsed_s=0.5,
                                tokens_per_step=100, examples_per_step=0)
  assert streak == 0
  assert summary == {'loss': 3.0, 'steps_per_sec': 4.0, 'tokens_per_sec': 400.0}


def test_a_sigterm_the_loop_did_not_act_on_goes_to_the_previous_handler():
  received = []
  handler = lambda signum, frame: received.append(signum)
  previous = signal.signal(signal.SIGTERM, handler)

  def send():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # Python runs the handler between bytecodes

  try:
    with loop._Preemption(None) as preemption:  # the block ends normally: handed on once
      send()
      assert preemption.requested and received == []
    assert received == [signal.SIGTERM]
    with pytest.raises(loop.Preempted):  # acted on (the loop raised): not handed on
      with loop._Preemption(None):
        send()
        raise loop.Preempted(3)
    assert received == [signal.SIGTERM]
    with loop._Preemption(None, hand_on=False):  # an error is on its way out: kept
      send()
    assert received == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is handler  # restored
  finally:
    signal.signal(signal.SIGTERM, previous)
