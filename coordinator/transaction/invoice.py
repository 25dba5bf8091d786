"""Invoices: numbered, immutable documents.

``issue`` turns a member's statement for a period into an invoice, in one ledger transaction: it
posts the statement's pending charges (``billing.issue_in``), takes the next number
(``<prefix>-<000001>``, gapless), renders the document (a self-contained HTML page: the member,
the period as local days of the billing time zone, every line with its energy and its amount in
the configured currency, the total, and the SHA-256 of the member's audit bundle for the period)
and stores it with its own SHA-256. The ledger refuses to change or delete a stored document; the
operator API lists and serves them (``/api/invoices``).

The audit bundle's digest is taken over the bundle without its ``created`` time
(``audit.bundle.digest``): ``peergrid audit export`` of the same member and period prints the
same digest, so a member can tell the bundle it checks is the one its invoice was issued on.
A member without boards has no bundle: its invoice says so.
"""

from __future__ import annotations

import hashlib
import html
import time
from dataclasses import dataclass

from coordinator.ledger import Ledger
from coordinator.ledger.queries import billing as q
from coordinator.ledger.queries.billing import Document
from coordinator.market import Tariff
from coordinator.transaction import billing
from coordinator.transaction.billing import ACCOUNTS, PER_DAY, Statement, Terms

PREFIX = "PG"
NO_BUNDLE = "none (no boards)"


@dataclass(frozen=True)
class Issuer:
    """Who issues the invoices and what their audit bundles name: the grid, its tariff, the
    coordinator's public key (None: no bundle digest), the number prefix."""

    grid: str
    tariff: Tariff
    coordinator_key: bytes | None = None
    prefix: str = PREFIX


def bundle_digest(ledger: Ledger, s: Statement, terms: Terms, issuer: Issuer) -> str:
    """SHA-256 of the member's audit bundle for the statement's period (``NO_BUNDLE`` without one)."""
    from coordinator.transaction.audit import AuditError
    from coordinator.transaction.audit.bundle import Charges, bundle, digest

    if issuer.coordinator_key is None:
        return NO_BUNDLE
    sub = q.subscription(ledger, s.member) or 0
    charges = Charges(issuer.tariff, terms.fixed_per_day, sub, terms.contracts, terms.zone)
    try:
        b = bundle(ledger, issuer.grid, s.member, s.start, s.end, charges, issuer.coordinator_key)
    except AuditError:
        return NO_BUNDLE
    return digest(b)


def issue(
    ledger: Ledger, s: Statement, terms: Terms, issuer: Issuer, *, now: int | None = None, name: str = ""
) -> Document:
    """Issue the statement as a numbered invoice: its charges posted, its document stored. Refused
    (``LedgerError``) as ``billing.issue`` refuses, the ledger left as it was."""
    when = int(time.time()) if now is None else now
    with ledger.transaction() as tx:
        period = billing.issue_in(tx, ledger, s, now=when, terms=terms)
        seq = q.next_invoice_seq(tx)
        number = f"{issuer.prefix}-{seq:06d}"
        digest = bundle_digest(ledger, s, terms, issuer)
        doc = render_html(s, terms, number=number, created=when, bundle=digest, name=name).encode()
        d = Document(
            number,
            seq,
            s.member,
            period,
            s.start,
            s.end,
            s.zone,
            s.total,
            terms.currency.code,
            digest,
            doc,
            hashlib.sha256(doc).hexdigest(),
            when,
        )
        q.add_document(tx, d)
    return d


def documents(ledger: Ledger, member: str | None = None) -> list[Document]:
    return q.documents(ledger, member)


def document(ledger: Ledger, number: str) -> Document | None:
    return q.document(ledger, number)


_STYLE = (
    "body{font-family:sans-serif;max-width:46em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;width:100%}td,th{padding:.3em .5em;border-bottom:1px solid #ddd}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tfoot td{font-weight:bold}"
    ".meta td{border:0;padding:.1em .5em}code{font-size:.85em;word-break:break-all}"
)


def render_html(s: Statement, terms: Terms, *, number: str, created: int, bundle: str, name: str = "") -> str:
    """The invoice as a self-contained HTML page (no script, no outside resource)."""
    cur = terms.currency
    e = html.escape
    first = billing.local_day(s.start, s.zone)
    last = billing.local_day(s.end - 1, s.zone)
    issued = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(created))
    rows = []
    for x, c in zip(s.lines, billing.line_cents(s), strict=True):
        label = ACCOUNTS.get(x.account, x.account)
        if x.account in PER_DAY:
            label += f", {s.days} day{'' if s.days == 1 else 's'}"
        kwh = f"{abs(x.energy) / 1e6:.3f} kWh" if x.energy else ""
        rows.append(f'<tr><td>{e(label)}</td><td class="n">{kwh}</td><td class="n">{cur.amount(c)}</td></tr>')
    who = f"{e(name)} ({e(s.member)})" if name and name != s.member else e(s.member)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>Invoice {e(number)}</title>'
        f"<style>{_STYLE}</style></head><body>\n"
        f"<h1>Invoice {e(number)}</h1>\n"
        '<table class="meta">'
        f"<tr><td>Member</td><td>{who}</td></tr>"
        f"<tr><td>Period</td><td>{first} to {last} ({e(s.zone)}), {s.intervals} intervals</td></tr>"
        f"<tr><td>Issued</td><td>{issued}</td></tr>"
        f"<tr><td>Currency</td><td>{e(cur.code)}</td></tr>"
        "</table>\n"
        '<table><thead><tr><th>Line</th><th class="n">Energy</th>'
        f'<th class="n">{e(cur.code)}</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody>"
        "<tfoot><tr><td>Total (+ credit, - to pay)</td><td></td>"
        f'<td class="n">{cur.amount(billing.cents(s.total))}</td></tr></tfoot></table>\n'
        f"<p>Audit bundle SHA-256: <code>{e(bundle)}</code></p>\n"
        "<p>Amounts are rounded to the minor unit line by line so that the lines add up to the total; the "
        "ledger keeps them exact.</p>\n"
        "</body></html>\n"
    )
