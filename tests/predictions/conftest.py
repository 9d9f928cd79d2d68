"""Fixtures of the prediction, batch and event webhook tests."""

import pytest

from ..webhook_receiver import Receiver


@pytest.fixture
def receiver():
    receivers = []

    def make(statuses=(200,)):
        receivers.append(Receiver(statuses))
        return receivers[-1]

    yield make
    for one in receivers:
        one.close()
