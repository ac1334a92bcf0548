"""The tree core on its own: election, feasibility and seqno requests, hold-down, briefing, timeouts."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.tree import BadMessage, LinkCostInputs, Output, TreeChanged, TreeNode
from meshmeet.tree.outputs import ROOT_REFRESH_S, ROOT_TIMEOUT_S
from meshmeet.tree.messages import Request, Update, decode, encode

LAN = LinkCostInputs(0.001, 0.0, 100e6, False)


class Net:
    """Instant FIFO delivery between cores, for step-by-step tests (the simulator does timing)."""

    def __init__(self, *nodes: tuple[str, int]) -> None:
        self.now = 0.0
        self.nodes = {name: TreeNode(name, prio, self.now) for name, prio in nodes}
        self.queue: deque[tuple[str, str, bytes]] = deque()
        self.log: list[tuple[str, str, object]] = []

    def take(self, src: str, out: Output) -> Output:
        for peer, data in out.sends:
            self.queue.append((src, peer, data))
        return out

    def connect(self, a: str, b: str, inputs: LinkCostInputs = LAN) -> None:
        self.take(a, self.nodes[a].link_up(b, inputs, self.now))
        self.take(b, self.nodes[b].link_up(a, inputs, self.now))

    def cut(self, a: str, b: str) -> None:
        self.take(a, self.nodes[a].link_down(b, self.now))
        self.take(b, self.nodes[b].link_down(a, self.now))

    def run(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            src, dst, data = self.queue.popleft()
            self.log.append((src, dst, decode(data)))
            node = self.nodes.get(dst)
            if node is not None and src in node._links:
                self.take(dst, node.receive(src, data, self.now))
        raise AssertionError("no quiescence")

    def advance(self, to: float) -> None:
        """Fire every timer due up to `to`, in deadline order."""
        while True:
            due = min((n.next_deadline(), name) for name, n in self.nodes.items())
            if due[0] > to:
                break
            self.now = max(self.now, due[0])
            self.take(due[1], self.nodes[due[1]].handle_timer(self.now))
            self.run()
        self.now = to


def test_highest_priority_becomes_root_and_others_choose_the_cheapest_parent() -> None:
    net = Net(("hq", 100), ("a", 10), ("b", 10), ("c", 10))
    net.connect("hq", "a")
    net.connect("hq", "b", LinkCostInputs(0.07, 0.01, 10e6, True))
    net.connect("a", "c")
    net.connect("b", "c")
    net.run()
    assert {n.root for n in net.nodes.values()} == {"hq"}
    assert net.nodes["a"].parent == "hq"
    assert net.nodes["c"].parent == "a"                 # LAN via a beats the metered 4G via b
    assert net.nodes["b"].parent == "c"                 # three LAN hops are cheaper than one metered hop
    assert net.nodes["hq"].children == ("a",)
    assert net.nodes["a"].children == ("c",)
    assert net.nodes["c"].children == ("b",)
    assert net.nodes["hq"].status() == {"root": "hq", "parent": None, "children": ["a"], "cost": 0,
                                        "seqno": net.nodes["hq"].seqno, "briefing": False}
    assert net.nodes["c"].cost == net.nodes["a"].cost * 2


def test_equal_priority_is_broken_by_the_greater_id() -> None:
    net = Net(("n1", 10), ("n2", 10), ("n3", 10))
    net.connect("n1", "n2")
    net.connect("n2", "n3")
    net.run()
    assert {n.root for n in net.nodes.values()} == {"n3"}


def test_unfeasible_update_is_not_taken_and_a_seqno_request_goes_to_the_root() -> None:
    """r-a-c over LAN, r-b over metered 4G, b-c LAN. After a~c dies, b's route (longer than c's
    old one, same seqno) is unfeasible for c, so c roots itself and asks r, through b, for a newer
    seqno; r issues it and c joins through b."""
    net = Net(("r", 100), ("a", 10), ("b", 10), ("c", 10))
    net.connect("r", "a")
    net.connect("r", "b", LinkCostInputs(0.07, 0.01, 10e6, True))
    net.connect("a", "c")
    net.connect("b", "c")
    net.run()
    assert net.nodes["c"].parent == "a" and net.nodes["b"].parent == "c"
    seqno = net.nodes["r"].seqno
    net.log.clear()
    net.cut("a", "c")
    net.run()
    requests = [(s, d, m) for s, d, m in net.log if isinstance(m, Request)]
    assert [(s, d) for s, d, m in requests] == [("c", "b"), ("b", "r")]   # asked its neighbour, who asked the root
    assert requests[0][2].seqno > seqno
    assert net.nodes["r"].seqno > seqno                        # the root issued a newer seqno
    assert net.nodes["c"].parent == "b" and net.nodes["c"].root == "r"


def test_node_never_accepts_a_route_through_its_own_subtree() -> None:
    """Whatever c advertises about the root, a (its parent) must not pick it while a has a feasible
    distance at least as good: feasibility compares against a's own history."""
    a = TreeNode("a", 10, 0.0)
    a.link_up("r", LAN, 0.0)
    a.link_up("c", LAN, 0.0)
    a.receive("r", encode(Update("r", 0, 100, 7, 0, 0)), 0.0)
    assert a.parent == "r"
    fd = a.feasibility_distance
    a.link_down("r", 0.1)
    out = a.receive("c", encode(Update("r", 0, 100, 7, fd[1], 0)), 0.2)   # same seqno, not better
    assert a.parent is None and a.is_root
    assert a.feasibility_distance == (8, 0)            # rooted itself with a seqno past everything seen
    assert any(decode(d) == Request("r", 9) for p, d in out.sends if p == "c")
    a.receive("c", encode(Update("r", 0, 100, 9, 40, 0)), 0.3)            # newer seqno: feasible
    assert a.parent == "c" and a.root == "r"


def test_root_refresh_is_the_only_steady_traffic_and_it_is_small() -> None:
    net = Net(("hq", 100), ("a", 10))
    net.connect("hq", "a")
    net.run()
    net.log.clear()
    net.advance(60.0)
    sizes = [len(encode(m)) for _, _, m in net.log]
    assert len(sizes) == 2 * int(60.0 // ROOT_REFRESH_S)         # one update each way per refresh
    assert sum(sizes) < 1024                                       # bytes per link per minute


def test_root_that_stops_advancing_is_given_up_after_the_timeout() -> None:
    a = TreeNode("a", 10, 0.0)
    a.link_up("hq", LAN, 0.0)
    a.receive("hq", encode(Update("hq", 0, 100, 3, 0, 0)), 0.0)
    assert a.root == "hq"
    assert a.next_deadline() == ROOT_TIMEOUT_S
    a.handle_timer(ROOT_TIMEOUT_S - 0.5)
    assert a.root == "hq"
    out = a.handle_timer(ROOT_TIMEOUT_S)
    assert a.is_root and a.root == "a"
    assert any(isinstance(e, TreeChanged) and e.root == "a" for e in out.events)


def test_flapping_link_is_held_down_then_used() -> None:
    a = TreeNode("a", 10, 0.0)
    now = 0.0
    for _ in range(3):                                 # down three times within a minute
        a.link_up("hq", LAN, now)
        a.link_down("hq", now + 1)
        now += 2
    a.link_up("hq", LAN, now)
    a.receive("hq", encode(Update("hq", 0, 100, 3, 0, 0)), now)
    assert a.is_root                                   # held down: the route is not used yet
    hold_until = a.next_deadline()
    assert hold_until > now
    a.handle_timer(hold_until)
    assert a.parent == "hq"


def test_first_link_loss_is_not_held_down() -> None:
    a = TreeNode("a", 10, 0.0)
    a.link_up("hq", LAN, 0.0)
    a.link_down("hq", 1.0)
    a.link_up("hq", LAN, 2.0)
    a.receive("hq", encode(Update("hq", 0, 100, 3, 0, 0)), 2.0)
    assert a.parent == "hq"


def test_briefing_makes_a_node_root_at_once_and_stop_hands_back() -> None:
    net = Net(("hq", 100), ("a", 10), ("backup", 50))
    net.connect("hq", "a")
    net.connect("a", "backup")
    net.run()
    assert net.nodes["backup"].root == "hq"
    out = net.take("backup", net.nodes["backup"].start_briefing(net.now))
    assert net.nodes["backup"].is_root and net.nodes["backup"].briefing      # at once, before any reply
    assert any(isinstance(e, TreeChanged) and e.briefing for e in out.events)
    net.run()
    assert all(n.root == "backup" and n.briefing for n in net.nodes.values())
    assert net.nodes["hq"].parent == "a"
    net.take("backup", net.nodes["backup"].stop_briefing(net.now))
    net.run()
    assert all(n.root == "hq" and not n.briefing for n in net.nodes.values())


def test_a_later_briefing_wins_over_an_earlier_one() -> None:
    net = Net(("hq", 100), ("b1", 50), ("b2", 50))
    net.connect("hq", "b1")
    net.connect("hq", "b2")
    net.run()
    net.take("b2", net.nodes["b2"].start_briefing(net.now))
    net.run()
    net.take("b1", net.nodes["b1"].start_briefing(net.now))
    net.run()
    assert {n.root for n in net.nodes.values()} == {"b1"}


def test_restarted_root_takes_the_tree_back() -> None:
    net = Net(("hq", 100), ("a", 10), ("b", 10))
    net.connect("hq", "a")
    net.connect("a", "b")
    net.connect("hq", "b")
    net.run()
    net.advance(35.0)
    net.cut("hq", "a")
    net.cut("hq", "b")
    net.nodes["hq"] = TreeNode("hq", 100, net.now)     # a new process: seqno starts from scratch
    net.run()
    assert {net.nodes["a"].root, net.nodes["b"].root} == {"b"}
    net.connect("hq", "a")
    net.connect("hq", "b")
    net.run()
    assert {n.root for n in net.nodes.values()} == {"hq"}
    assert net.nodes["hq"].seqno > net.nodes["hq"].feasibility_distance[0] - 1


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_hostile_bytes_give_a_bad_message_event_not_an_exception(data: bytes) -> None:
    node = TreeNode("a", 10, 0.0)
    node.link_up("b", LAN, 0.0)
    out = node.receive("b", data, 1.0)
    assert all(isinstance(e, (BadMessage, TreeChanged)) for e in out.events)


def test_messages_from_unknown_peers_and_self_links_are_ignored() -> None:
    node = TreeNode("a", 10, 0.0)
    assert node.receive("zz", encode(Update("zz", 0, 999, 5, 0, 0)), 0.0) == Output()
    assert node.link_up("a", LAN, 0.0) == Output()
    assert node.is_root


def test_link_metrics_move_the_parent_only_on_a_significant_change() -> None:
    net = Net(("hq", 100), ("a", 10), ("b", 10), ("c", 10))
    net.connect("hq", "a")
    net.connect("hq", "b")
    net.connect("a", "c")
    net.connect("b", "c", LinkCostInputs(0.0012, 0.0, 100e6, False))
    net.run()
    assert net.nodes["c"].parent == "a"
    cost = net.nodes["c"].cost
    # 10 % worse: below the 25 % threshold, nothing moves
    net.take("c", net.nodes["c"].link_metrics("a", 0.0013, 0.0, 100e6, False, net.now))
    net.run()
    assert net.nodes["c"].parent == "a" and net.nodes["c"].cost == cost
    # the LAN to a turns lossy and slow: c moves to b (a feasible route: b's metric is below c's FD)
    net.take("c", net.nodes["c"].link_metrics("a", 0.05, 0.3, 1e6, False, net.now))
    net.run()
    assert net.nodes["c"].parent == "b"
    assert net.nodes["a"].children == () and net.nodes["b"].children == ("c",)
