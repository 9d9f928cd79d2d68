"""An account's asynchronous predictions through services/predictions.py: another
account's prediction is NotFound to read, list or cancel, and stays as it was;
each account's webhook secret is its own."""

import time

import pytest

from core.errors import NotFound, TooManyRequests
from core.tables import Prediction
from services import predictions


def queued(accounts, owner: str, prediction_id: str) -> Prediction:
    row = Prediction(id=prediction_id, seq=time.time_ns(), account_id=accounts.as_(owner).account_id,
                     task="text-vectorisation", model="english", path="/text-vectorisation", input={"text": "hi"})
    accounts.db.add(row)
    accounts.db.commit()
    return row


def test_another_accounts_prediction_is_not_found_and_is_not_cancelled(accounts):
    queued(accounts, "alice", "pred_alice")
    bob = accounts.as_("bob")

    for attempt in (lambda: predictions.get(bob, "pred_alice"), lambda: predictions.cancel(bob, "pred_alice"),
                    lambda: predictions.listing(bob, after="pred_alice")):
        with pytest.raises(NotFound) as refused:
            attempt()
        assert refused.value.status == 404 and "pred_alice" in refused.value.message

    statement, _ = predictions.listing(bob)
    assert accounts.db.scalars(statement).all() == []
    alice = accounts.as_("alice")
    assert predictions.get(alice, "pred_alice").status == "queued"  # bob's cancel changed nothing

    assert predictions.cancel(alice, "pred_alice").status == "cancelled"


def test_the_queue_limit_counts_only_the_accounts_own_predictions(accounts):
    most = accounts.as_("alice").config.account_max_queued_predictions
    for number in range(most):
        queued(accounts, "alice", f"pred_a{number}")

    with pytest.raises(TooManyRequests):
        predictions.check_room(accounts.as_("alice"))
    predictions.check_room(accounts.as_("bob"))  # alice's queue is not bob's


def test_each_account_rotates_only_its_own_webhook_secret(accounts):
    alice, bob = accounts.as_("alice"), accounts.as_("bob")
    alice_secret, bob_secret = predictions.webhook_secret(alice), predictions.webhook_secret(bob)
    assert alice_secret != bob_secret

    rotated = predictions.rotate_webhook_secret(alice)

    assert rotated != alice_secret and predictions.webhook_secret(alice) == rotated
    assert predictions.webhook_secret(bob) == bob_secret
