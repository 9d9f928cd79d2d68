"""The waiting requests of one model's batcher, shared fairly between accounts.

One first-in-first-out queue per account, served round-robin: a batch takes one
request from each account in turn (the account served last goes to the back),
so an account that floods a model gets its requests into each batch beside
everyone else's instead of ahead of them. Another account's request, arriving
behind a thousand of the flood's, runs in the very next pass.

How many requests an account may have waiting is its fair share of the queue's
limit (BATCH_MAX_QUEUE divided among the accounts waiting, itself included):
alone, an account may use all of it; once a second account waits, the first
gets 429s until it is down to half, while the second is let in even though the
queue was full. Requests made outside any account (a build's sample run, a
preload) wait under the account None, which is shared like any other.
"""

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable


class FairQueue:
    def __init__(self):
        # account -> its waiting requests; the order of the accounts is the round-robin's.
        self._queues: OrderedDict[Hashable, deque] = OrderedDict()
        self._requests = 0
        self._items = 0

    def __len__(self) -> int:
        return self._requests

    def items(self) -> int:
        """Items waiting, all requests together."""
        return self._items

    def waiting(self, account) -> int:
        """Requests the account has waiting."""
        queue = self._queues.get(account)
        return len(queue) if queue else 0

    def share(self, account, limit: int) -> int:
        """How many requests `account` may have waiting: `limit` divided among the
        accounts with requests waiting, counting `account` whether or not it has any."""
        accounts = len(self._queues) + (account not in self._queues)
        return max(1, limit // accounts)

    def accounts(self) -> int:
        return len(self._queues)

    def waiting_accounts(self) -> set:
        return set(self._queues)

    def append(self, account, request) -> None:
        queue = self._queues.get(account)
        if queue is None:
            queue = self._queues[account] = deque()  # a new account joins at the back of the round
        queue.append(request)
        self._requests += 1
        self._items += len(request.items)

    def take(self, max_items: int, accept: Callable[[object], bool],
             eligible: Callable[[object], bool] | None = None, per_account: int | None = None) -> list:
        """Whole requests, round-robin across accounts, up to `max_items` items (a
        request larger than that alone still makes a batch of one). `accept(request)`
        is asked of each request taken off the queue; a refused one (cancelled, past
        its deadline) is dropped and the account's next one is looked at.
        `eligible(account)`: whether the account may have a request taken now (the
        others keep theirs waiting). `per_account`: the most items one account's
        requests may take of the batch, beyond its first request."""
        batch, size = [], 0
        taken: dict = {}
        progressed = True
        while progressed and self._queues:
            progressed = False
            for account in list(self._queues):
                if eligible is not None and not eligible(account):
                    continue
                room = max_items - size if batch else None
                if per_account is not None and account in taken:
                    room = min(room, per_account - taken[account])
                request = self._pop_accepted(account, accept, room=room)
                if request is not None:
                    batch.append(request)
                    size += len(request.items)
                    taken[account] = taken.get(account, 0) + len(request.items)
                    progressed = True
        return batch

    def pop_next(self, accept: Callable[[object], bool], fits: Callable[[object], bool],
                 eligible: Callable[[object], bool] | None = None):
        """The next request round-robin, one at a time, for a caller that admits
        requests as room frees (a generation's running batch): the first
        acceptable request of the first eligible account whose next request
        `fits` now (asked before `accept`, which may start it); None if there is
        none. Refused requests are dropped as in take()."""
        for account in list(self._queues):
            if eligible is not None and not eligible(account):
                continue
            while account in self._queues:
                request = self._queues[account][0]
                if not fits(request):
                    break  # kept for later; another account's may fit
                self._drop_first(account)
                if accept(request):
                    if account in self._queues:
                        self._queues.move_to_end(account)
                    return request
        return None

    def _drop_first(self, account) -> None:
        queue = self._queues[account]
        request = queue.popleft()
        self._requests -= 1
        self._items -= len(request.items)
        if not queue:
            del self._queues[account]

    def _pop_accepted(self, account, accept, room: int | None):
        """The account's first acceptable request if it fits in `room` items (None:
        any size), moving the account to the back of the round; None if it has none
        that fits now."""
        queue = self._queues[account]
        while queue:
            request = queue[0]
            if room is not None and len(request.items) > room:
                return None  # kept for a later batch; the other accounts may still fit
            queue.popleft()
            self._requests -= 1
            self._items -= len(request.items)
            if accept(request):
                break
        else:
            request = None
        if queue:
            self._queues.move_to_end(account)
        else:
            del self._queues[account]
        return request
