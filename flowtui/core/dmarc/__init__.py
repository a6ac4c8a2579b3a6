"""DMARC aggregate reports (RFC 7489 "rua"): parse, store, collect, summarise, alert.

parse.py turns files and mails into ``Report``s (hostile input expected);
store.py keeps them in the monitor's SQLite file; collect.py fetches them from
an IMAP folder; summary.py answers the questions the screen and the report
command ask; rules.py turns a summary into alert conditions.
"""
