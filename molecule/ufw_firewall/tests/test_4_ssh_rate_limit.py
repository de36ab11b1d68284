"""Last (it trips the limit for the admin's address for 30 s): SSH is rate-limited. ufw's
`limit` rejects the 6th and later new connections from one address within 30 seconds."""

from conftest import SERVER, host


def test_ssh_limit_rejects_a_burst():
    out = host("admin").check_output(
        "for i in $(seq 1 10); do nc -z -w 3 %s 22 && echo ok || echo refused; done", SERVER
    )
    results = out.split()
    assert len(results) == 10
    # Without the limit rule all ten would connect.
    assert results.count("refused") >= 4, results
    assert results[0] == "ok"
