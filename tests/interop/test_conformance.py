"""``serve --conformance`` states what serve accepts, and a probe of the running serve
(``echo --probe --conformance``) observes exactly that; the observed statement of DCMTK
storescp names what it accepts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.peers import run_cli

EXPLICIT, JPEG_LOSSLESS = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.70"
CT = "1.2.840.10008.5.1.4.1.1.2"


def test_the_statement_is_what_a_probe_of_serve_observes(serve_process: Any,
                                                         tmp_path: Path) -> None:
    options = ("--accept-ts", "explicit", "--accept-ts", "jpeg-lossless", "--aet", "CONFPACS",
               "--allow", "MODALITY1", "--allow", "PROBE")
    root = tmp_path / "archive"
    stated = run_cli("serve", str(root), *options, "--conformance", "--json")
    assert stated.exit_code == 0, stated.output
    statement = json.loads(stated.stdout)
    assert statement["application_entity"]["ae_title"] == "CONFPACS"
    assert statement["application_entity"]["calling_ae_titles_allowed"] == ["MODALITY1",
                                                                             "PROBE"]
    storage = next(s for s in statement["services"] if s["service"] == "Storage")
    stated_storage = {cx["abstract_syntax"]: set(cx["transfer_syntaxes"])
                      for cx in storage["sop_classes"]}
    assert stated_storage[CT] == {EXPLICIT, JPEG_LOSSLESS}

    served = serve_process(*options[:4], root=root, ae_title="CONFPACS")
    probed = run_cli("echo", "--probe", "--conformance", "--json", "-aet", "PROBE",
                     f"CONFPACS@127.0.0.1:{served.port}")
    assert probed.exit_code == 0, probed.output
    observed = json.loads(probed.stdout)
    assert observed["observed"] is True
    assert {a["sop_class_uid"]: set(a["transfer_syntaxes"]) for a in observed["accepted"]} \
        == stated_storage
    assert observed["implementation_class_uid"] == \
        statement["implementation"]["class_uid"]


def test_the_statement_reads_as_a_conformance_statement(tmp_path: Path) -> None:
    result = run_cli("serve", str(tmp_path / "archive"), "--conformance", "--tls-cert",
                     "cert.pem", "--tls-key", "key.pem", "--duplicates", "reject")
    assert result.exit_code == 0, result.output
    text = result.stdout
    for heading in ("## 1 Overview", "### 2.1 Association policies",
                    "### 2.2 Presentation contexts accepted", "### 2.3 Storage SCP",
                    "### 2.4 Query/Retrieve SCP", "## 3 Character sets", "## 4 Security"):
        assert heading in text, heading
    assert "| 0x0111 | duplicate SOP instance |" in text  # the statuses C-STORE answers
    assert "duplicate policy `reject`" in text and "- TLS: yes" in text
    assert not (tmp_path / "archive").exists()  # nothing was started or created
    wrong = run_cli("serve", str(tmp_path / "archive"), "--json")
    assert wrong.exit_code == 2 and "--conformance" in wrong.stderr


def test_the_observed_statement_of_dcmtk_storescp(dcmtk_storescp: Callable[..., Any]) -> None:
    scp = dcmtk_storescp()  # DCMTK's default: uncompressed syntaxes only
    result = run_cli("echo", "--probe", "--conformance", scp.address)
    assert result.exit_code == 0, result.output
    ct = next(line for line in result.stdout.splitlines() if f"`{CT}`" in line)
    assert "explicit" in ct and "implicit" in ct and "jpeg" not in ct
    assert "# Observed conformance:" in result.stdout
    assert "Implementation Version Name `OFFIS_DCMTK" in result.stdout
