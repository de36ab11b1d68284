"""The certificates converge left behind, checked with real clients (openssl, curl, runuser)."""

from __future__ import annotations

import subprocess

from conftest import CA, EPHEMERAL, TLS, ok

PEBBLE_ROOT = "/tmp/pebble-root.pem"


def sans(host, path: str, kind: str = "x509") -> str:
    return ok(host, f"openssl {kind} -in {path} -noout -text | grep -A1 'Subject Alternative Name'")


# --- ACME (pebble) ----------------------------------------------------------------------------------


def test_acme_certificate_verifies_against_pebbles_root(server):
    # pebble regenerates its root at every start: fetch the current one from its management port.
    ok(server, f"curl -sS --fail -o {PEBBLE_ROOT} https://mol-tls-pebble:15000/roots/0")
    issuer = ok(server, f"openssl x509 -in {TLS}/https.crt -noout -issuer")
    assert "Pebble Intermediate CA" in issuer
    out = ok(server, f"openssl verify -CAfile {PEBBLE_ROOT} -untrusted {TLS}/https.crt {TLS}/https.crt")
    assert out.strip() == f"{TLS}/https.crt: OK"
    # The full chain holds the leaf and pebble's intermediate.
    assert ok(server, f"grep -c 'BEGIN CERTIFICATE' {TLS}/https.crt").strip() == "2"


def test_acme_certificate_does_not_verify_against_another_root(server):
    # Negative: the check above is real (the internal CA does not vouch for the pebble certificate).
    result = server.run(f"openssl verify -CAfile {TLS}/ca.crt {TLS}/https.crt")
    assert result.rc != 0 and "unable to get local issuer certificate" in result.stdout + result.stderr


def test_acme_certificate_sans_are_dns_only(server):
    out = sans(server, f"{TLS}/https.crt")
    assert "DNS:pacs.tls.test" in out and "IP Address" not in out


def test_acme_bootstrap_site_serves_the_webroot_and_redirects(server):
    ok(server, "install -m 0644 /dev/null /var/www/acme/.well-known/acme-challenge/probe && "
               "echo token-probe > /var/www/acme/.well-known/acme-challenge/probe")
    body = ok(server, "curl -sS --fail -H 'Host: pacs.tls.test' http://127.0.0.1/.well-known/acme-challenge/probe")
    assert body.strip() == "token-probe"
    head = ok(server, "curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: pacs.tls.test' http://127.0.0.1/x")
    assert head == "301 https://pacs.tls.test/x"
    server.run("rm -f /var/www/acme/.well-known/acme-challenge/probe")


def test_acme_renewal_timer_is_active(server):
    assert server.service("orthanc-remote-acme-renew.timer").is_enabled
    assert server.service("orthanc-remote-acme-renew.timer").is_running


def test_acme_renewal_service_does_nothing_when_not_due(server):
    serial = ok(server, f"openssl x509 -in {TLS}/https.crt -noout -serial")
    ok(server, "systemctl start orthanc-remote-acme-renew.service")
    journal = ok(server, "journalctl -t orthanc-remote-acme-renew --no-pager -n 5")
    assert "https: valid beyond the renewal window, nothing to do" in journal
    assert ok(server, f"openssl x509 -in {TLS}/https.crt -noout -serial") == serial


def test_acme_renewal_script_renews_through_pebble_and_reloads_nginx(server):
    before = ok(server, f"openssl x509 -in {TLS}/https.crt -noout -serial")
    out = ok(server, "/usr/local/sbin/orthanc-remote-acme-renew --force 2>&1")
    assert "https: renewed" in out and "nginx reloaded" in out, out
    assert ok(server, f"openssl x509 -in {TLS}/https.crt -noout -serial") != before
    verify = ok(server, f"openssl verify -CAfile {PEBBLE_ROOT} -untrusted {TLS}/https.crt {TLS}/https.crt")
    assert verify.strip().endswith(": OK")
    # The new certificate belongs to the same key nginx reads.
    assert ok(server, f"openssl x509 -in {TLS}/https.crt -noout -pubkey") == ok(
        server, f"openssl pkey -in {TLS}/https.key -pubout")
    assert ok(server, f"stat -c '%a %U %G' {TLS}/https.crt").strip() == "644 root root"


# --- Internal CA --------------------------------------------------------------------------------------


def test_internal_ca_chain_verifies(server):
    out = ok(server, f"openssl verify -CAfile {TLS}/ca.crt {TLS}/dicom.crt")
    assert out.strip() == f"{TLS}/dicom.crt: OK"
    assert ok(server, f"cmp {CA}/ca.crt {TLS}/ca.crt && cmp {CA}/ca.crt {TLS}/dicom-trusted.crt && echo same").strip() == "same"
    ca = ok(server, f"openssl x509 -in {CA}/ca.crt -noout -subject -ext basicConstraints,keyUsage")
    assert "CN = tlslab orthanc-remote CA" in ca and "CA:TRUE" in ca and "Certificate Sign" in ca


def test_internal_ca_does_not_vouch_for_a_foreign_certificate(server, alt):
    # Negative: alt's self-signed certificate must not verify against server's CA.
    pem = ok(alt, f"cat {TLS}/dicom.crt")
    ok(server, f"printf '%s' '{pem}' > /tmp/foreign.crt")
    result = server.run(f"openssl verify -CAfile {TLS}/ca.crt /tmp/foreign.crt")
    assert result.rc != 0


def test_dicom_certificate_sans_and_usage(server):
    out = ok(server, f"openssl x509 -in {TLS}/dicom.crt -noout -ext subjectAltName,extendedKeyUsage")
    for san in ("DNS:pacs.tls.test", "IP Address:10.231.12.10", "IP Address:10.8.0.1"):
        assert san in out
    assert "TLS Web Server Authentication" in out and "TLS Web Client Authentication" in out


def test_ca_directory_and_key_are_root_only(server):
    assert ok(server, f"stat -c '%a %U %G' {CA} {CA}/ca.key {CA}/clients").split("\n")[:3] == [
        "700 root root", "600 root root", "700 root root"]
    result = server.run(f"runuser -u nobody -- cat {CA}/ca.key")
    assert result.rc != 0 and "Permission denied" in result.stderr


# --- Self-signed and CSR (mol-tls-alt) ---------------------------------------------------------------


def test_self_signed_chain_verifies(alt):
    out = ok(alt, f"openssl verify -CAfile {TLS}/dicom.crt {TLS}/dicom.crt")
    assert out.strip() == f"{TLS}/dicom.crt: OK"
    subject = ok(alt, f"openssl x509 -in {TLS}/dicom.crt -noout -subject").split("=", 1)[1]
    issuer = ok(alt, f"openssl x509 -in {TLS}/dicom.crt -noout -issuer").split("=", 1)[1]
    assert subject == issuer
    out = sans(alt, f"{TLS}/dicom.crt")
    for san in ("DNS:alt.tls.test", "IP Address:10.231.12.11", "IP Address:10.8.0.1"):
        assert san in out


def test_csr_has_the_sans_and_reached_the_controller(alt):
    out = sans(alt, f"{TLS}/https.csr", kind="req")
    for san in ("DNS:alt.tls.test", "IP Address:10.231.12.11", "IP Address:10.8.0.1"):
        assert san in out
    artifact = EPHEMERAL / "artifacts-mol-tls-alt" / "csr" / "https.csr"
    assert artifact.read_text() == ok(alt, f"cat {TLS}/https.csr")
    assert oct(artifact.stat().st_mode & 0o777) == "0o600"
    assert oct(artifact.parent.stat().st_mode & 0o777) == "0o700"
    # Until the CA answers, nginx gets a certificate for the same key.
    assert ok(alt, f"openssl x509 -in {TLS}/https.crt -noout -pubkey") == ok(alt, f"openssl req -in {TLS}/https.csr -noout -pubkey")


# --- Keys ---------------------------------------------------------------------------------------------


def test_key_permissions_and_owners(server, alt):
    for host in (server, alt):
        assert ok(host, f"stat -c '%a %U %G' {TLS}/https.key").strip() == "640 root www-data"
        assert ok(host, f"stat -c '%a %U %G' {TLS}/dicom.key").strip() == "640 root orthanc"
        for public in ("https.crt", "dicom.crt", "ca.crt", "dicom-trusted.crt"):
            assert ok(host, f"stat -c '%a %U' {TLS}/{public}").strip() == "644 root"
    # Negative: the service group reads its key, anyone else is refused.
    assert "PRIVATE KEY" in ok(server, f"runuser -u www-data -- cat {TLS}/https.key")
    result = server.run(f"runuser -u www-data -- cat {TLS}/dicom.key")
    assert result.rc != 0 and "Permission denied" in result.stderr
    result = server.run(f"runuser -u nobody -- cat {TLS}/https.key")
    assert result.rc != 0 and "Permission denied" in result.stderr


def test_key_types(server, alt):
    assert "ASN1 OID: prime256v1" in ok(server, f"openssl pkey -in {TLS}/https.key -noout -text")
    assert "ASN1 OID: prime256v1" in ok(server, f"openssl pkey -in {TLS}/dicom.key -noout -text")
    assert "Private-Key: (3072 bit" in ok(alt, f"openssl pkey -in {TLS}/https.key -noout -text")
    assert "Private-Key: (3072 bit" in ok(alt, f"openssl pkey -in {TLS}/dicom.key -noout -text")


# --- Modality packages ----------------------------------------------------------------------------------


def test_modality_package_on_the_controller(server):
    package = EPHEMERAL / "artifacts-mol-tls-server" / "modalities" / "mri-1"
    assert oct(package.stat().st_mode & 0o777) == "0o700"
    assert sorted(p.name for p in package.iterdir()) == ["README.txt", "ca.crt", "client.crt", "client.key"]
    for item in package.iterdir():
        assert oct(item.stat().st_mode & 0o777) == "0o600", item
    # us-1 has tls: false: nothing is issued for it.
    assert not (package.parent / "us-1").exists()

    def openssl(*args: str) -> str:
        return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout

    assert openssl("verify", "-CAfile", str(package / "ca.crt"), str(package / "client.crt")).strip().endswith(": OK")
    assert openssl("x509", "-in", str(package / "client.crt"), "-noout", "-pubkey") == openssl(
        "pkey", "-in", str(package / "client.key"), "-pubout")
    assert "TLS Web Client Authentication" in openssl("x509", "-in", str(package / "client.crt"), "-noout", "-ext",
                                                      "extendedKeyUsage")
    assert (package / "ca.crt").read_text() == ok(server, f"cat {TLS}/ca.crt")
    readme = (package / "README.txt").read_text()
    assert "echoscu -v +tls client.key client.crt +cf ca.crt -aet MRI1 -aec ORTHANC pacs.tls.test 4242" in readme


def test_modality_certificate_passes_a_real_mutual_tls_handshake(server, alt):
    """openssl s_server with the DICOM certificate and dicom-trusted.crt, as Orthanc uses them."""
    package = EPHEMERAL / "artifacts-mol-tls-server" / "modalities" / "mri-1"
    for name in ("client.crt", "client.key", "ca.crt"):
        content = (package / name).read_text()
        ok(alt, f"install -d -m 0700 /tmp/mri-1 && printf '%s' '{content}' > /tmp/mri-1/{name}")
    ok(server, "systemd-run --unit tls-test-sserver --collect openssl s_server -accept 11112 -Verify 1 "
               f"-cert {TLS}/dicom.crt -key {TLS}/dicom.key -CAfile {TLS}/dicom-trusted.crt -naccept 2 -www")
    try:
        ok(server, "for i in $(seq 50); do ss -ltn | grep -q ':11112 ' && exit 0; sleep 0.1; done; exit 1")
        good = alt.run("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | openssl s_client -connect 10.231.12.10:11112 "
                       "-cert /tmp/mri-1/client.crt -key /tmp/mri-1/client.key -CAfile /tmp/mri-1/ca.crt "
                       "-verify_return_error -verify_hostname pacs.tls.test -ign_eof 2>&1")
        assert "Verify return code: 0 (ok)" in good.stdout and "HTTP/1.0 200 ok" in good.stdout, good.stdout
        # Negative: without a client certificate the server refuses the handshake.
        bad = alt.run("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | openssl s_client -connect 10.231.12.10:11112 "
                      "-CAfile /tmp/mri-1/ca.crt -quiet 2>&1")
        assert "HTTP/1.0 200" not in bad.stdout and ("alert" in bad.stdout.lower() or "error" in bad.stdout.lower()), bad.stdout
    finally:
        server.run("systemctl stop tls-test-sserver")
