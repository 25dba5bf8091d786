"""MQTT topic layout. Every level that names a grid or a board is a checked identifier.

    peergrid/<grid>/b/<board>/reading   board -> coordinator  (QoS 1)
    peergrid/<grid>/b/<board>/ack       board -> coordinator  (QoS 1)
    peergrid/<grid>/b/<board>/status    board -> coordinator  (QoS 1, retained, last will)
    peergrid/<grid>/b/<board>/enrol     board -> coordinator  (QoS 1)
    peergrid/<grid>/b/<board>/order     coordinator -> board  (QoS 1)
    peergrid/<grid>/b/<board>/update    release key -> board  (QoS 1, retained: an update manifest)
    peergrid/<grid>/b/<board>/fwstate   board -> coordinator  (QoS 1, retained: the update's state)
    peergrid/<grid>/fw/<digest>/<n>     chunk n of an image   (QoS 1, retained; raw bytes)
    peergrid/<grid>/market/result       coordinator -> all    (QoS 1, retained)

The board id sits at a fixed level so a broker ACL can pin a board to its own topics
(e.g. Mosquitto ``pattern write peergrid/+/b/%u/reading``).
"""

from protocol.errors import TopicError
from protocol.messages import BROADCAST, BY_LEAF, Message, board_of, id_ok

ROOT = "peergrid"
BOARD_LEAVES = ("reading", "ack", "status", "enrol", "order", "update", "fwstate")
MAX_TOPIC = 128


def board_topic(grid: str, board: str, leaf: str) -> str:
    if not id_ok(grid) or not id_ok(board):
        raise TopicError("grid %r or board %r is not a valid identifier" % (grid, board))
    if leaf not in BOARD_LEAVES:
        raise TopicError("no board topic %r" % (leaf,))
    return "%s/%s/b/%s/%s" % (ROOT, grid, board, leaf)


def result_topic(grid: str) -> str:
    if not id_ok(grid):
        raise TopicError("grid %r is not a valid identifier" % (grid,))
    return "%s/%s/market/result" % (ROOT, grid)


def chunk_topic(grid: str, digest: bytes, n: int) -> str:
    """Where chunk ``n`` of the image with SHA-256 ``digest`` is published (its first 8 bytes)."""
    if not id_ok(grid):
        raise TopicError("grid %r is not a valid identifier" % (grid,))
    return "%s/%s/fw/%s/%d" % (ROOT, grid, digest[:8].hex(), n)


def board_filter(grid: str, leaf: str, share: "str | None" = None) -> str:
    """Subscription filter for one leaf of every board of a grid (``share``: shared group)."""
    if not id_ok(grid) or leaf not in BOARD_LEAVES:
        raise TopicError("bad filter for grid %r leaf %r" % (grid, leaf))
    f = "%s/%s/b/+/%s" % (ROOT, grid, leaf)
    if share is not None:
        if not id_ok(share):
            raise TopicError("shared group %r is not a valid identifier" % (share,))
        f = "$share/%s/%s" % (share, f)
    return f


def parse(topic: str) -> "tuple[str, str | None, str]":
    """Split a topic into ``(grid, board_or_None, leaf)``; TopicError if it is not ours."""
    if not isinstance(topic, str) or len(topic) > MAX_TOPIC:
        raise TopicError("topic is not a string of at most %d characters" % MAX_TOPIC)
    parts = topic.split("/")
    if len(parts) == 5 and parts[0] == ROOT and parts[2] == "b":
        if id_ok(parts[1]) and id_ok(parts[3]) and parts[4] in BOARD_LEAVES:
            return parts[1], parts[3], parts[4]
    elif len(parts) == 4 and parts[0] == ROOT and parts[2] == "market" and parts[3] == "result":
        if id_ok(parts[1]):
            return parts[1], None, "result"
    raise TopicError("not a peergrid topic: %r" % (topic,))


def topic_for(grid: str, msg: Message) -> str:
    """The topic a message is published on (a result names its own grid)."""
    board = board_of(msg)
    if msg.DIR == BROADCAST or board is None:
        return result_topic(getattr(msg, "grid", grid))
    return board_topic(grid, board, msg.LEAF)


def check(topic: str, msg: Message) -> str:
    """Raise TopicError unless ``msg`` belongs on ``topic``; return the topic's grid id."""
    grid, board, leaf = parse(topic)
    if BY_LEAF.get(leaf) is not type(msg):
        raise TopicError("a %s does not belong on %s" % (type(msg).__name__, topic))
    if board is not None and board_of(msg) != board:
        raise TopicError("message of board %r on the topic of board %r" % (board_of(msg), board))
    if board is None and getattr(msg, "grid", None) != grid:
        raise TopicError("result of grid %r on the topic of grid %r" % (getattr(msg, "grid", None), grid))
    return grid
