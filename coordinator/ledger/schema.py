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
    # 7: dashboard access tokens (stored as SHA-256; member_id NULL = operator) and members' disputes
    """
    CREATE TABLE access_tokens (
        token_hash TEXT PRIMARY KEY,
        member_id TEXT REFERENCES members(id),
        label TEXT NOT NULL DEFAULT '',
        created INTEGER NOT NULL,
        revoked INTEGER
    ) STRICT;
    CREATE TABLE disputes (
        id INTEGER PRIMARY KEY,
        member_id TEXT NOT NULL REFERENCES members(id),
        interval INTEGER NOT NULL,
        reason TEXT NOT NULL,
        evidence TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved', 'rejected')),
        created INTEGER NOT NULL
    ) STRICT;
    """,
    # 8: compact readings (under 100 bytes a reading): boards by integer ref, the four optional
    # battery/EV fields packed into one integer (NULL without them), and instead of a ts index a
    # per board and hour span of sequence numbers. ``readings`` stays as a view with the same rows.
    """
    CREATE TABLE board_refs (
        ref INTEGER PRIMARY KEY,
        board_id TEXT NOT NULL UNIQUE
    ) STRICT;
    CREATE TABLE reading_rows (
        ref INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        e_imp INTEGER NOT NULL,
        e_exp INTEGER NOT NULL,
        p INTEGER NOT NULL,
        u INTEGER NOT NULL,
        ext INTEGER,
        flags INTEGER NOT NULL,
        sig BLOB NOT NULL,
        PRIMARY KEY (ref, seq)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE reading_spans (
        ref INTEGER NOT NULL,
        hour INTEGER NOT NULL,
        seq_min INTEGER NOT NULL,
        seq_max INTEGER NOT NULL,
        PRIMARY KEY (ref, hour)
    ) STRICT, WITHOUT ROWID;
    CREATE TRIGGER reading_spans_add AFTER INSERT ON reading_rows BEGIN
        INSERT INTO reading_spans VALUES (NEW.ref, NEW.ts / 3600, NEW.seq, NEW.seq)
        ON CONFLICT (ref, hour) DO UPDATE SET
            seq_min = min(seq_min, excluded.seq_min), seq_max = max(seq_max, excluded.seq_max);
    END;
    INSERT INTO board_refs (board_id) SELECT DISTINCT board_id FROM readings ORDER BY board_id;
    INSERT INTO reading_rows
        SELECT b.ref, r.seq, r.ts, r.e_imp, r.e_exp, r.p, r.u,
            CASE WHEN coalesce(r.bat_soc, r.bat_p, r.ev_state, r.ev_p) IS NULL THEN NULL ELSE
                coalesce(r.bat_soc + 1, 0) | (coalesce(r.bat_p + 10000001, 0) << 10)
                | (coalesce(r.ev_state + 1, 0) << 35) | (coalesce(r.ev_p + 1, 0) << 38) END,
            r.flags, r.sig
        FROM readings r JOIN board_refs b ON b.board_id = r.board_id ORDER BY b.ref, r.seq;
    DROP TRIGGER readings_append_only_u;
    DROP TRIGGER readings_append_only_d;
    DROP TABLE readings;
    CREATE TRIGGER readings_append_only_u BEFORE UPDATE ON reading_rows
        BEGIN SELECT RAISE(ABORT, 'readings are append-only'); END;
    CREATE TRIGGER readings_append_only_d BEFORE DELETE ON reading_rows
        BEGIN SELECT RAISE(ABORT, 'readings are append-only'); END;
    CREATE VIEW readings AS
        SELECT b.board_id AS board_id, r.seq AS seq, r.ts AS ts, r.e_imp AS e_imp, r.e_exp AS e_exp,
            r.p AS p, r.u AS u,
            nullif(r.ext & 1023, 0) - 1 AS bat_soc,
            nullif((r.ext >> 10) & 33554431, 0) - 10000001 AS bat_p,
            nullif((r.ext >> 35) & 7, 0) - 1 AS ev_state,
            nullif((r.ext >> 38) & 16777215, 0) - 1 AS ev_p,
            r.flags AS flags, r.sig AS sig
        FROM reading_rows r JOIN board_refs b ON b.ref = r.ref;
    CREATE TRIGGER readings_view_i INSTEAD OF INSERT ON readings BEGIN
        INSERT OR IGNORE INTO board_refs (board_id) VALUES (NEW.board_id);
        INSERT INTO reading_rows VALUES (
            (SELECT ref FROM board_refs WHERE board_id = NEW.board_id), NEW.seq, NEW.ts, NEW.e_imp,
            NEW.e_exp, NEW.p, NEW.u,
            CASE WHEN coalesce(NEW.bat_soc, NEW.bat_p, NEW.ev_state, NEW.ev_p) IS NULL THEN NULL ELSE
                coalesce(NEW.bat_soc + 1, 0) | (coalesce(NEW.bat_p + 10000001, 0) << 10)
                | (coalesce(NEW.ev_state + 1, 0) << 35) | (coalesce(NEW.ev_p + 1, 0) << 38) END,
            NEW.flags, NEW.sig);
    END;
    CREATE TRIGGER readings_view_u INSTEAD OF UPDATE ON readings BEGIN
        UPDATE reading_rows SET ts = NEW.ts, e_imp = NEW.e_imp, e_exp = NEW.e_exp, p = NEW.p, u = NEW.u,
            flags = NEW.flags, sig = NEW.sig
        WHERE ref = (SELECT ref FROM board_refs WHERE board_id = OLD.board_id) AND seq = OLD.seq;
    END;
    CREATE TRIGGER readings_view_d INSTEAD OF DELETE ON readings BEGIN
        DELETE FROM reading_rows
        WHERE ref = (SELECT ref FROM board_refs WHERE board_id = OLD.board_id) AND seq = OLD.seq;
    END;
    """,
    # 9: every redispatch of a board's device by the delivery guard (PV export limit, battery, EV
    # current, deferrable load): why, the new setpoint and what the member is owed; and the cleared
    # flexibility orders that the dispatcher turns into board setpoints
    """
    CREATE TABLE redispatches (
        interval INTEGER NOT NULL,
        board_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('pv_limit', 'battery', 'ev', 'load')),
        delta_w INTEGER NOT NULL,
        setpoint INTEGER NOT NULL,
        reason TEXT NOT NULL,
        compensation INTEGER NOT NULL,
        PRIMARY KEY (interval, board_id, kind)
    ) STRICT;
    CREATE TABLE flex_orders (
        order_id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        congestion_point TEXT NOT NULL,
        party TEXT NOT NULL,
        board_id TEXT NOT NULL,
        asset TEXT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('reduce', 'increase')),
        power_w INTEGER NOT NULL CHECK (power_w > 0),
        price INTEGER NOT NULL,
        start INTEGER NOT NULL,
        intervals INTEGER NOT NULL CHECK (intervals > 0)
    ) STRICT;
    CREATE INDEX flex_orders_start ON flex_orders(start);
    """,
    # 10: how close each checked interval ran to the grid's limits after redispatch (lowest and
    # highest voltage, most loaded line and transformer; AC power flow's values or the screen's)
    """
    CREATE TABLE grid_checks (
        interval INTEGER PRIMARY KEY,
        v_min_pu REAL,
        v_min_bus TEXT,
        v_max_pu REAL,
        v_max_bus TEXT,
        line_max_pct REAL,
        line_max TEXT,
        trafo_max_pct REAL,
        trafo_max TEXT,
        violations INTEGER NOT NULL CHECK (violations >= 0),
        source TEXT NOT NULL CHECK (source IN ('screen', 'ac')),
        changes INTEGER NOT NULL CHECK (changes >= 0)
    ) STRICT;
    """,
    # 11: when a member left the community (NULL: still a member); with ``created`` (when it
    # joined) it bounds the days its bills charge fixed charges and subscriptions for
    """
    ALTER TABLE members ADD COLUMN left_at INTEGER;
    """,
    # 12: readings held in quarantine (energy beyond what the board's connection can carry, and the
    # board's readings after it, in order): kept out of ``readings`` until the operator releases
    # them (then stored as readings, the chain intact) or rejects them (the board is then refused
    # until it is retired or replaced)
    """
    CREATE TABLE quarantine (
        board_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        e_imp INTEGER NOT NULL,
        e_exp INTEGER NOT NULL,
        body BLOB NOT NULL,
        sig BLOB NOT NULL,
        reason TEXT NOT NULL,
        received INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'released', 'rejected')),
        decided_at INTEGER,
        decided_by TEXT,
        PRIMARY KEY (board_id, seq)
    ) STRICT;
    CREATE INDEX quarantine_state ON quarantine(state, board_id);
    """,
    # 13: OCPP chargers (coordinator/chargers): each bound to a member, its state, sessions and
    # meter samples as it reported them (never billed: the boards' signed readings are), the
    # charging profiles sent with the charger's answer, and the cross-check of its energy per
    # interval against its member's board
    """
    CREATE TABLE chargers (
        id TEXT PRIMARY KEY,
        member_id TEXT NOT NULL REFERENCES members(id),
        bound_at INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'unseen'
            CHECK (state IN ('unseen', 'online', 'silent', 'refused', 'offline')),
        reason TEXT,
        last_seen INTEGER,
        protocol TEXT,
        vendor TEXT,
        model TEXT
    ) STRICT;
    CREATE TABLE charger_sessions (
        charger_id TEXT NOT NULL,
        tx_id INTEGER NOT NULL,
        connector INTEGER NOT NULL,
        id_tag TEXT NOT NULL,
        start INTEGER NOT NULL,
        meter_start INTEGER NOT NULL,
        stop INTEGER,
        meter_stop INTEGER,
        reason TEXT,
        PRIMARY KEY (charger_id, tx_id)
    ) STRICT;
    CREATE TABLE charger_meter (
        charger_id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        energy_wh INTEGER,
        power_w INTEGER,
        soc INTEGER,
        tx_id INTEGER,
        PRIMARY KEY (charger_id, ts)
    ) STRICT;
    CREATE TABLE charger_profiles (
        charger_id TEXT NOT NULL,
        interval INTEGER NOT NULL,
        limit_ma INTEGER NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        sent INTEGER NOT NULL,
        PRIMARY KEY (charger_id, interval)
    ) STRICT;
    CREATE TABLE charger_checks (
        interval INTEGER NOT NULL,
        charger_id TEXT NOT NULL,
        charger_mwh INTEGER NOT NULL,
        board_mwh INTEGER NOT NULL,
        ok INTEGER NOT NULL CHECK (ok IN (0, 1)),
        PRIMARY KEY (interval, charger_id)
    ) STRICT;
    """,
    # 14: members' device and preference changes (who, when, from which interval), grid operators'
    # flexibility requests with the coordinator-signed record of each payment, and capacity limits
    # on a congestion point or the connection (coordinator/ledger/member_changes.py, flex_requests.py)
    """
    CREATE TABLE member_changes (
        id INTEGER PRIMARY KEY,
        member_id TEXT NOT NULL REFERENCES members(id),
        prefs TEXT NOT NULL,
        previous TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        changed_at INTEGER NOT NULL,
        effective INTEGER NOT NULL,
        applied_at INTEGER
    ) STRICT;
    CREATE INDEX member_changes_pending ON member_changes(applied_at, effective);
    CREATE TABLE flex_requests (
        request_id TEXT PRIMARY KEY,
        congestion_point TEXT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('reduce', 'increase')),
        power_w INTEGER NOT NULL CHECK (power_w > 0),
        start INTEGER NOT NULL,
        intervals INTEGER NOT NULL CHECK (intervals > 0),
        price_cap INTEGER NOT NULL CHECK (price_cap >= 0),
        source TEXT NOT NULL,
        created INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('posted', 'cleared', 'settled', 'failed')),
        ordered_w INTEGER NOT NULL,
        delivered_mwh INTEGER,
        paid INTEGER,
        note TEXT NOT NULL,
        reported INTEGER NOT NULL CHECK (reported IN (0, 1))
    ) STRICT;
    CREATE INDEX flex_requests_point ON flex_requests(congestion_point, start);
    CREATE TABLE flex_records (
        order_id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL REFERENCES flex_requests(request_id),
        party TEXT NOT NULL,
        interval INTEGER NOT NULL,
        delivered INTEGER NOT NULL,
        payment INTEGER NOT NULL,
        body BLOB NOT NULL,
        sig BLOB NOT NULL CHECK (length(sig) = 64)
    ) STRICT;
    CREATE INDEX flex_records_party ON flex_records(party, interval);
    CREATE TABLE delivery_limits (
        limit_id TEXT PRIMARY KEY,
        resource TEXT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('import', 'export')),
        limit_w INTEGER NOT NULL CHECK (limit_w >= 0),
        start INTEGER NOT NULL,
        until INTEGER NOT NULL CHECK (until > start),
        source TEXT NOT NULL,
        created INTEGER NOT NULL
    ) STRICT;
    """,
    # 15: invoices as documents: an invoice's period as instants and whether it posted its charges
    # (billing.charges), and the issued documents, numbered and immutable (HTML with the lines, the
    # period in the billing time zone and the SHA-256 of the member's audit bundle)
    """
    ALTER TABLE invoices ADD COLUMN period_start INTEGER;
    ALTER TABLE invoices ADD COLUMN period_end INTEGER;
    ALTER TABLE invoices ADD COLUMN charges_posted INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE invoice_documents (
        number TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE CHECK (seq > 0),
        member_id TEXT NOT NULL,
        period TEXT NOT NULL,
        period_start INTEGER NOT NULL,
        period_end INTEGER NOT NULL,
        timezone TEXT NOT NULL,
        total INTEGER NOT NULL,
        currency TEXT NOT NULL,
        bundle_sha256 TEXT NOT NULL,
        html BLOB NOT NULL,
        sha256 TEXT NOT NULL,
        created INTEGER NOT NULL,
        UNIQUE (member_id, period)
    ) STRICT;
    CREATE TRIGGER invoice_documents_immutable_u BEFORE UPDATE ON invoice_documents
        BEGIN SELECT RAISE(ABORT, 'an issued invoice is immutable'); END;
    CREATE TRIGGER invoice_documents_immutable_d BEFORE DELETE ON invoice_documents
        BEGIN SELECT RAISE(ABORT, 'an issued invoice is immutable'); END;
    """,
    # 16: OCPP chargers' passwords (HTTP Basic authentication, OCPP security profiles 1 and 2): the
    # salted hash (coordinator/chargers/auth.py, never the password) and when it was set; a charger
    # bound before has none and is refused until one is set
    """
    ALTER TABLE chargers ADD COLUMN password_hash TEXT;
    ALTER TABLE chargers ADD COLUMN password_set INTEGER;
    """,
]
