"""Schema migrations: an ordered list; ``user_version`` records how many have run.

Never edit a released migration: append a new one.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: registry, readings, rejections
    """
    CREATE TABLE members (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('consumer', 'prosumer', 'storage', 'ev', 'producer')),
        tariff TEXT NOT NULL DEFAULT 'default',
        feeder TEXT,
        bus TEXT,
        prefs TEXT NOT NULL DEFAULT '{}',
        created INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE boards (
        id TEXT PRIMARY KEY,
        member_id TEXT REFERENCES members(id),
        board_type TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'retired')),
        created INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE board_keys (
        board_id TEXT NOT NULL REFERENCES boards(id),
        pubkey BLOB NOT NULL CHECK (length(pubkey) = 32),
        valid_from INTEGER NOT NULL,
        valid_to INTEGER,
        PRIMARY KEY (board_id, pubkey)
    ) STRICT;
    CREATE UNIQUE INDEX board_keys_one_current ON board_keys(board_id) WHERE valid_to IS NULL;
    CREATE TABLE readings (
        board_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        e_imp INTEGER NOT NULL,
        e_exp INTEGER NOT NULL,
        p INTEGER NOT NULL,
        u INTEGER NOT NULL,
        bat_soc INTEGER,
        bat_p INTEGER,
        ev_state INTEGER,
        ev_p INTEGER,
        flags INTEGER NOT NULL,
        sig BLOB NOT NULL,
        PRIMARY KEY (board_id, seq)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX readings_ts ON readings(board_id, ts);
    CREATE TABLE rejections (
        code TEXT PRIMARY KEY,
        count INTEGER NOT NULL
    ) STRICT;
    CREATE TRIGGER readings_append_only_u BEFORE UPDATE ON readings
        BEGIN SELECT RAISE(ABORT, 'readings are append-only'); END;
    CREATE TRIGGER readings_append_only_d BEFORE DELETE ON readings
        BEGIN SELECT RAISE(ABORT, 'readings are append-only'); END;
    """,
    # 2: market, dispatch, settlement
    """
    CREATE TABLE intervals (
        start INTEGER PRIMARY KEY,
        length INTEGER NOT NULL,
        scheme TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('cleared', 'dispatched', 'settled')),
        price INTEGER,
        digest BLOB,
        result_frame BLOB
    ) STRICT;
    CREATE TABLE market_orders (
        interval INTEGER NOT NULL REFERENCES intervals(start),
        order_id TEXT NOT NULL,
        party TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        energy INTEGER NOT NULL CHECK (energy > 0),
        limit_price INTEGER NOT NULL,
        PRIMARY KEY (interval, order_id)
    ) STRICT;
    CREATE TABLE trades (
        interval INTEGER NOT NULL REFERENCES intervals(start),
        n INTEGER NOT NULL,
        buyer TEXT NOT NULL,
        seller TEXT NOT NULL,
        energy INTEGER NOT NULL CHECK (energy > 0),
        price INTEGER NOT NULL,
        fee INTEGER NOT NULL,
        PRIMARY KEY (interval, n)
    ) STRICT;
    CREATE TRIGGER trades_append_only_u BEFORE UPDATE ON trades
        BEGIN SELECT RAISE(ABORT, 'trades are append-only'); END;
    CREATE TRIGGER trades_append_only_d BEFORE DELETE ON trades
        BEGIN SELECT RAISE(ABORT, 'trades are append-only'); END;
    CREATE TABLE board_orders (
        board_id TEXT NOT NULL,
        oseq INTEGER NOT NULL,
        interval INTEGER NOT NULL,
        frame BLOB NOT NULL,
        ack_status INTEGER,
        ack_frame BLOB,
        PRIMARY KEY (board_id, oseq)
    ) STRICT;
    CREATE TABLE deliveries (
        interval INTEGER NOT NULL,
        party TEXT NOT NULL,
        e_imp INTEGER NOT NULL,
        e_exp INTEGER NOT NULL,
        PRIMARY KEY (interval, party)
    ) STRICT;
    CREATE TABLE postings (
        interval INTEGER NOT NULL,
        n INTEGER NOT NULL,
        party TEXT NOT NULL,
        account TEXT NOT NULL,
        amount INTEGER NOT NULL,
        energy INTEGER NOT NULL DEFAULT 0,
        memo TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (interval, n)
    ) STRICT;
    CREATE INDEX postings_party ON postings(party, interval);
    CREATE TABLE invoices (
        member_id TEXT NOT NULL,
        period TEXT NOT NULL,
        total INTEGER NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (member_id, period)
    ) STRICT;
    """,
    # 3: per board and interval, which readings a settled quantity came from (the audit chain):
    # each row starts at the reading the board's previous row ended on
    """
    CREATE TABLE board_deliveries (
        interval INTEGER NOT NULL,
        board_id TEXT NOT NULL,
        seq0 INTEGER NOT NULL,
        seq1 INTEGER NOT NULL,
        e_imp0 INTEGER NOT NULL,
        e_exp0 INTEGER NOT NULL,
        e_imp1 INTEGER NOT NULL,
        e_exp1 INTEGER NOT NULL,
        PRIMARY KEY (board_id, interval)
    ) STRICT;
    """,
    # 4: ex-ante schedules: the trades of dispatched storage, binding at their cleared prices
    """
    CREATE TABLE schedules (
        interval INTEGER NOT NULL,
        n INTEGER NOT NULL,
        buyer TEXT NOT NULL,
        seller TEXT NOT NULL,
        energy INTEGER NOT NULL CHECK (energy > 0),
        price INTEGER NOT NULL,
        fee INTEGER NOT NULL,
        PRIMARY KEY (interval, n)
    ) STRICT;
    """,
    # 5: the utility meter at the community's grid connection, per period, for reconciliation
    """
    CREATE TABLE utility_readings (
        period_start INTEGER NOT NULL,
        period_end INTEGER NOT NULL CHECK (period_end > period_start),
        e_imp INTEGER NOT NULL CHECK (e_imp >= 0),
        e_exp INTEGER NOT NULL CHECK (e_exp >= 0),
        reconciled INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (period_start)
    ) STRICT;
    """,
    # 6: PV export limits set by the delivery guard: why, and what the member is owed
    """
    CREATE TABLE curtailments (
        interval INTEGER NOT NULL,
        board_id TEXT NOT NULL,
        pv_limit_w INTEGER NOT NULL,
        delta_w INTEGER NOT NULL,
        reason TEXT NOT NULL,
        compensation INTEGER NOT NULL,
        PRIMARY KEY (interval, board_id)
    ) STRICT;
    """,
]
