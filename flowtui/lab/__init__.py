"""Local mail labs on loopback: real Postfix+Dovecot, or embedded pure-Python servers."""
