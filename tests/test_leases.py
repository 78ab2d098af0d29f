"""Review leases: two sessions are never handed the same image."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import update

from db.models import ReviewLease, utcnow
from mumic_core.store.leases import claim, leased_to_others, release
from mumic_core.store.queue import QueueFilter, queue_count, queue_page
from mumic_core.store.registry import active_version


def test_claims_skip_other_sessions_and_release_the_previous_image(demo_studio):
    s = demo_studio
    ids = queue_page(s, QueueFilter(version_id=active_version(s).id), 0, 6)
    a = claim(s, "tab-a", "ann", ids, want=1)
    b = claim(s, "tab-b", "bob", ids, want=1)
    assert a == ids[:1] and b == ids[1:2]
    assert leased_to_others(s, "tab-b") == {ids[0]: "ann"}
    assert claim(s, "tab-a", "ann", ids[2:], want=2) == ids[2:4]  # moving on releases ids[0]
    assert set(leased_to_others(s, "tab-b")) == set(ids[2:4])
    assert claim(s, "tab-b", "bob", ids, want=6) == [ids[0], ids[1], ids[4], ids[5]]
    release(s, "tab-a")
    assert leased_to_others(s, "tab-b") == {}


def test_queue_leaves_out_images_other_sessions_hold(demo_studio):
    s = demo_studio
    f = QueueFilter(version_id=active_version(s).id)
    first = queue_page(s, f, 0, 3)
    claim(s, "tab-a", "ann", first[:2])
    mine = QueueFilter(version_id=f.version_id, skip_leased_by_others="tab-a")
    theirs = QueueFilter(version_id=f.version_id, skip_leased_by_others="tab-b")
    assert queue_page(s, mine, 0, 3) == first  # my own leases stay in my queue
    assert queue_page(s, theirs, 0, 1) == first[2:3]
    assert queue_count(s, theirs) == queue_count(s, f) - 2


def test_an_expired_lease_is_free_again(demo_studio):
    s = demo_studio
    ids = queue_page(s, QueueFilter(version_id=active_version(s).id), 0, 2)
    claim(s, "tab-a", "ann", ids[:1])
    with s.write() as w:  # a tab closed long ago
        w.execute(update(ReviewLease).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert leased_to_others(s, "tab-b") == {}
    assert claim(s, "tab-b", "bob", ids, want=1) == ids[:1]


def test_simultaneous_claims_never_share_an_image(demo_studio):
    s = demo_studio
    ids = queue_page(s, QueueFilter(version_id=active_version(s).id), 0, 20)
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def session(name: str) -> None:
        barrier.wait()
        got[name] = claim(s, name, name, ids, want=3)

    threads = [threading.Thread(target=session, args=(f"tab-{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = [i for v in got.values() for i in v]
    assert len(taken) == 12 and len(set(taken)) == 12


def test_browser_seat_survives_a_new_mask():
    from mumic_core.store.leases import browser_seat

    token, masks = bytes(range(16)), (bytes([7, 1, 2, 3]), bytes([200, 9, 9, 1]))
    cookies = [
        "2|" + m.hex() + "|" + bytes(b ^ m[k % 4] for k, b in enumerate(token)).hex() + "|1795808515" for m in masks
    ]
    assert cookies[0] != cookies[1]
    assert browser_seat(cookies[0]) == browser_seat(cookies[1]) is not None  # one browser, two page loads
    assert browser_seat(cookies[0].replace("|0", "|1", 1)) != browser_seat(cookies[0])
    assert browser_seat(None) is None and browser_seat("garbage") is None and browser_seat("2|zz|zz|1") is None


def test_an_image_reviewed_after_the_queue_was_read_is_not_handed_out(demo_studio):
    """The race the load benchmark found: B reads the queue, A reviews the top image and moves
    on (releasing its lease), then B claims from its old list. B must get the next image."""
    from mumic_core.services.review import submit
    from mumic_core.store.queue import image_views

    s = demo_studio
    f = QueueFilter(version_id=active_version(s).id, status="unreviewed")
    seen_by_b = queue_page(s, f, 0, 5)
    [x] = claim(s, "tab-a", "ann", seen_by_b, want=1)
    submit(s, image_views(s, [x], f.version_id)[0], set(), {1}, "ann")
    a_next = claim(s, "tab-a", "ann", queue_page(s, f, 0, 5), want=1)  # A moves on: x is free again
    expected = [i for i in seen_by_b if i != x and i not in a_next][:1]
    assert claim(s, "tab-b", "bob", seen_by_b, want=1, unreviewed_only=True) == expected
    assert claim(s, "tab-c", "cay", [x], want=1) == [x]  # without the option: any free image
