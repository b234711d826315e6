"""The whole client contract again, on a host that demotes every page to its SSD tier
before each get, flush and destroy (see ``conftest.DemotingClient``)."""

from tests.contract import test_contract
from tests.contract.test_contract import *  # noqa: F403 - the same tests, this directory's host

# A host with a tier has more room than its RAM: puts these tests expect a RAM-only host
# to refuse, or pages they expect it to evict, are kept here (any put may be accepted and
# any ephemeral page may stay), so they do not apply.
for _name in (
    "test_a_shared_ephemeral_get_makes_the_page_the_most_recently_used",
    "test_shrinking_capacity_evicts_ephemeral_first_and_keeps_persistent",
    "test_a_client_past_its_share_leaves_the_last_room_to_others",
):
    assert hasattr(test_contract, _name)
    del globals()[_name]
