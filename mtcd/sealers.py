"""Sealers: who keeps the keystore's 32-byte data key, and what reading it takes.

The entries in keystore.json are only as safe as their data key (TR 33.868
§7.5 asks that the stored PIN be protected). Each sealer keeps that key in
one file of its own in the state directory, so which sealer a store uses can
be seen from the files alone:

    keystore.key        file          plain key, 0600 (root reads it)
    keystore.key.cred   systemd-creds encrypted with the host secret
                                      (/var/lib/systemd/credential.secret), a
                                      TPM2, or both
    keystore.key.tpm2   tpm2          sealed under the TPM's owner hierarchy
                                      through tpm2-pytss

With a TPM in the key, a copy of the state directory (or the whole SD card)
is useless on another device. The host secret alone binds the key to this
installation's root filesystem, not to the hardware.

A sealer never replaces a key that exists: every sealed entry would become
unreadable. Errors are one-line KeystoreErrors that never carry key bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from pathlib import Path
from typing import Protocol, Sequence

from . import keystore
from .errors import KeystoreError
from .fsutil import atomic_write
from .keystore import KEY_BYTES, KEY_NAME

SEALER_KINDS = ("auto", "systemd-creds", "tpm2", "file")

CRED_NAME = "mtcd-keystore"  # embedded in the credential; decrypting under another name fails
CRED_FILE = KEY_NAME + ".cred"
TPM2_FILE = KEY_NAME + ".tpm2"
TPM2_FORMAT = "mtcd-tpm2-seal/1"

TPM_DEVICE = Path("/dev/tpmrm0")  # the kernel's resource manager, shared safely with others
DEFAULT_TCTI = f"device:{TPM_DEVICE}"

WITH_KEYS = ("auto", "host", "tpm2", "host+tpm2")
# The first 16 bytes of a systemd credential name the key it was sealed with
# (systemd's creds-util.h). Anything else -- notably the fixed "null" key
# used when no TPM is present -- is refused: it protects nothing, and a
# planted one would make us seal new PINs under a key an attacker knows.
_CRED_KEY_IDS = {
    bytes.fromhex("5a1c6a86df9d4096b1d5a65e0862f19a"): "host",
    bytes.fromhex("0c7cc07b117645919c4b0bea08bc20fe"): "tpm2",
    bytes.fromhex("93a894094874449090caf2fc93cab553"): "host+tpm2",
}

_MAX_SEALED_BYTES = 64 * 1024  # a sealed 32-byte key is a few hundred bytes
_SYSTEMD_CREDS_TIMEOUT = 120.0  # seconds; a TPM can be slow, a hang must not be forever


class DescribedSealer(keystore.Sealer, Protocol):
    """A sealer that can say in one line what protects the key (mtcctl status)."""

    def describe(self) -> str: ...


class FileSealer(keystore.FileSealer):
    """keystore.FileSealer, with the `describe()` every sealer here has."""

    kind = "file"

    def describe(self) -> str:
        return "file (0600, not sealed)"


class SystemdCredsSealer:
    """The data key as a systemd credential (systemd-creds encrypt/decrypt).

    `with_key` is systemd-creds' --with-key: "host", "tpm2", "host+tpm2", or
    "auto" (systemd decides when the key is created; any of the three is
    accepted when loading). An explicit choice is also enforced on load, so
    a credential swapped for a weaker one is refused.

    `runner` is an argv prefix systemd-creds is run under (tests run it in
    a private mount namespace so the machine's host secret is never used).
    The key only ever travels through pipes, never argv or a plain file.
    """

    kind = "systemd-creds"

    def __init__(self, state_dir: Path, with_key: str = "auto",
                 tpm2_device: str | None = None, runner: Sequence[str] = ()):
        if with_key not in WITH_KEYS:
            raise KeystoreError(
                f"systemd-creds key must be one of {', '.join(WITH_KEYS)} (got {with_key!r})"
            )
        self.path = Path(state_dir) / CRED_FILE
        self.with_key = with_key
        self.tpm2_device = tpm2_device
        self.runner = tuple(runner)

    def describe(self) -> str:
        try:
            sealed = _read_sealed(self.path)
            kind = _cred_key_kind(self.path, sealed) if sealed is not None else None
        except KeystoreError:
            return f"systemd-creds ({self.with_key}, key file unusable)"
        if kind is None:
            return f"systemd-creds ({self.with_key}, no key yet)"
        return f"systemd-creds ({kind})"

    def load_key(self) -> bytes | None:
        sealed = _read_sealed(self.path)
        if sealed is None:
            return None
        kind = _cred_key_kind(self.path, sealed)
        if self.with_key != "auto" and kind != self.with_key:
            raise KeystoreError(
                f"{self.path} is sealed with the {kind} key, not {self.with_key} as configured; "
                "refusing it"
            )
        key = self._run("decrypt", ["--name=" + CRED_NAME, "-", "-"], sealed)
        if len(key) != KEY_BYTES:
            raise KeystoreError(f"{self.path} does not hold a {KEY_BYTES}-byte key")
        return key

    def create_key(self) -> bytes:
        if os.path.lexists(self.path):
            raise KeystoreError(f"{self.path} already exists; refusing to replace the key")
        key = os.urandom(KEY_BYTES)  # secrets.token_bytes, without loading hmac (OpenSSL)
        args = ["--name=" + CRED_NAME, "--with-key=" + self.with_key, "-", "-"]
        sealed = self._run("encrypt", args, key)
        # systemd-creds writes to stdout; our own atomic write makes the file
        # 0600 and durable, and never leaves half a credential behind.
        atomic_write(self.path, sealed, 0o600)
        return key

    def _run(self, verb: str, args: list[str], data: bytes) -> bytes:
        argv = [*self.runner, "systemd-creds", verb]
        if self.tpm2_device is not None:
            argv.append("--tpm2-device=" + self.tpm2_device)
        argv += args
        import subprocess  # here: only this sealer runs a program

        try:
            done = subprocess.run(
                argv, input=data, capture_output=True, timeout=_SYSTEMD_CREDS_TIMEOUT,
                check=False, close_fds=True,
            )
        except FileNotFoundError:
            raise KeystoreError(
                f"cannot run {argv[0]}: not installed (the systemd-creds sealer needs systemd >= 250)"
            ) from None
        except subprocess.TimeoutExpired:
            raise KeystoreError(
                f"systemd-creds {verb} for {self.path} did not finish "
                f"within {_SYSTEMD_CREDS_TIMEOUT:.0f} s"
            ) from None
        except OSError as exc:
            raise KeystoreError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            raise KeystoreError(
                f"systemd-creds {verb} failed for {self.path}: {_last_line(done.stderr)}"
            )
        return done.stdout


class Tpm2Sealer:
    """The data key sealed by a TPM 2.0 through tpm2-pytss.

    The parent is a primary key in the owner hierarchy, re-created from a
    fixed template each time: the same TPM gives the same key, so nothing
    but the sealed object's public and private parts is stored. Those are
    useless without this TPM's owner seed. Commands carrying the key run in
    a salted session with parameter encryption, so it never crosses the TPM
    bus in the clear.
    """

    kind = "tpm2"

    def __init__(self, state_dir: Path, tcti: str = DEFAULT_TCTI):
        self.path = Path(state_dir) / TPM2_FILE
        self.tcti = tcti

    def describe(self) -> str:
        return f"tpm2 ({self.tcti})"

    def load_key(self) -> bytes | None:
        raw = _read_sealed(self.path)
        if raw is None:
            return None
        parent_name, public, private = _parse_tpm2_file(self.path, raw)
        with _TpmSession(self.tcti) as tpm:
            if tpm.parent_name != parent_name:
                # Another TPM, or this one was cleared: its owner seed is gone.
                raise KeystoreError(
                    f"{self.path} was sealed by another TPM (or this TPM was cleared); "
                    "it cannot be unsealed here"
                )
            key = tpm.unseal(public, private)
        if len(key) != KEY_BYTES:
            raise KeystoreError(f"{self.path} does not hold a {KEY_BYTES}-byte key")
        return key

    def rollback_counter(self) -> "Tpm2Counter | None":
        """The TPM's monotonic NV counter that witnesses this store's writes
        (None until the key exists): restoring the state directory, key and
        all, cannot wind it back."""
        raw = _read_sealed(self.path)
        if raw is None:
            return None
        _parent, public, _private = _parse_tpm2_file(self.path, raw)
        return Tpm2Counter(self.tcti, public)

    def create_key(self) -> bytes:
        if os.path.lexists(self.path):
            raise KeystoreError(f"{self.path} already exists; refusing to replace the key")
        key = os.urandom(KEY_BYTES)  # secrets.token_bytes, without loading hmac (OpenSSL)
        with _TpmSession(self.tcti) as tpm:
            public, private = tpm.seal(key)
            parent_name = tpm.parent_name
        doc = {
            "format": TPM2_FORMAT,
            "parent": parent_name.hex(),
            "public": base64.b64encode(public).decode("ascii"),
            "private": base64.b64encode(private).decode("ascii"),
        }
        atomic_write(self.path, (json.dumps(doc, indent=1) + "\n").encode(), 0o600)
        return key


class Tpm2Counter:
    """An NV counter index in the owner range, chosen from the sealed key's
    public area (so each store on a TPM has its own).  A TPM counter only
    ever goes up, and on its first increment starts at the highest value
    any counter of that TPM ever had: deleting and re-creating it does not
    wind it back either."""

    _BASE = 0x01300000  # owner-defined NV indices

    def __init__(self, tcti: str, key_public: bytes):
        self.tcti = tcti
        import hashlib  # here only: mtcctl status opens a store without a TPM and never needs it

        self.index = self._BASE + int.from_bytes(hashlib.sha256(key_public).digest()[:2], "big")

    def describe(self) -> str:
        return f"TPM2 NV counter {self.index:#010x} on {self.tcti}"

    def read(self) -> int | None:
        """The counter's value; None when it was never advanced."""
        t = _tpm2_pytss()
        with _TpmContext(self.tcti) as ectx:
            handle = self._handle(t, ectx)
            if handle is None:
                return None
            try:
                public, _name = ectx.nv_read_public(handle)
                if not public.nvPublic.attributes & t.TPMA_NV.WRITTEN:
                    return None
                data = ectx.nv_read(handle, 8, 0, auth_handle=t.ESYS_TR.OWNER)
            except Exception as exc:
                raise _tpm_error(self.tcti, "cannot read the rollback counter on", exc) from None
            return int.from_bytes(bytes(data), "big")

    def advance(self) -> int:
        """Increment (defining the index on first use); the new value."""
        t = _tpm2_pytss()
        with _TpmContext(self.tcti) as ectx:
            try:
                handle = self._handle(t, ectx)
                if handle is None:
                    public = t.TPM2B_NV_PUBLIC(nvPublic=t.TPMS_NV_PUBLIC(
                        nvIndex=self.index, nameAlg=t.TPM2_ALG.SHA256,
                        attributes=_counter_attributes(t), dataSize=8))
                    handle = ectx.nv_define_space(None, public, auth_handle=t.ESYS_TR.OWNER)
                ectx.nv_increment(handle, auth_handle=t.ESYS_TR.OWNER)
                data = ectx.nv_read(handle, 8, 0, auth_handle=t.ESYS_TR.OWNER)
            except KeystoreError:
                raise
            except Exception as exc:
                raise _tpm_error(self.tcti, "cannot advance the rollback counter on", exc) from None
            return int.from_bytes(bytes(data), "big")

    def _handle(self, t, ectx):
        """The index's ESYS handle; None when it is not defined.  Listed
        first, so a missing index is no TPM error (the TSS logs those)."""
        try:
            more, data = ectx.get_capability(t.TPM2_CAP.HANDLES, self.index, 1)
            defined = [h for h in data.data.handles if int(h) == self.index]
            if not defined:
                return None
            handle = ectx.tr_from_tpmpublic(self.index)
            public, _name = ectx.nv_read_public(handle)
        except Exception as exc:
            raise _tpm_error(self.tcti, "cannot read the rollback counter on", exc) from None
        written = int(t.TPMA_NV.WRITTEN)
        if int(public.nvPublic.attributes) & ~written != int(_counter_attributes(t)):
            raise KeystoreError(
                f"TPM2 NV index {self.index:#010x} on {self.tcti} is not mtcd's rollback counter; "
                "undefine it or use another sealer"
            )
        return handle


def _counter_attributes(t):
    return (t.TPMA_NV.OWNERWRITE | t.TPMA_NV.OWNERREAD | t.TPMA_NV.NO_DA
            | (t.TPM2_NT.COUNTER << t.TPMA_NV.TPM2_NT_SHIFT))


class _TpmContext:
    """A bare ESAPI connection, closed on exit."""

    def __init__(self, tcti: str):
        self.tcti = tcti

    def __enter__(self):
        t = _tpm2_pytss()
        try:
            self.ectx = t.ESAPI(self.tcti)
        except Exception as exc:
            raise _tpm_error(self.tcti, "cannot open", exc) from None
        return self.ectx

    def __exit__(self, *exc_info) -> None:
        try:
            self.ectx.close()
        except Exception:
            pass


def _tpm_error(tcti: str, doing: str, exc: Exception) -> KeystoreError:
    reason = " ".join(str(exc).split()) or exc.__class__.__name__
    return KeystoreError(f"{doing} TPM2 {tcti}: {reason[:200]}")


def sealed_key_files(state_dir: Path) -> dict[str, Path]:
    """Sealer kind -> its key file, for each key file present in `state_dir`."""
    state_dir = Path(state_dir)
    files = {"file": state_dir / KEY_NAME, "systemd-creds": state_dir / CRED_FILE,
             "tpm2": state_dir / TPM2_FILE}
    return {kind: path for kind, path in files.items() if os.path.lexists(path)}


def choose_sealer(kind: str, state_dir: Path, *, tpm_device: Path = TPM_DEVICE,
                  runner: Sequence[str] = ()) -> DescribedSealer:
    """The sealer for the configured `kind` ("auto", "systemd-creds", "tpm2", "file").

    A store keeps the sealer it was created with: "auto" follows the key
    file present, and an explicit kind whose key file is missing while
    another sealer's exists is refused (a second key would split the store).
    "auto" on a new store takes the strongest available: systemd-creds with
    host+tpm2 when a TPM is present, systemd-creds with the host secret,
    a TPM through tpm2-pytss, the plain file.
    """
    if kind not in SEALER_KINDS:
        raise KeystoreError(
            f"sealer must be one of {', '.join(SEALER_KINDS)} (got {str(kind)[:40]!r})"
        )
    state_dir = Path(state_dir)
    present = sealed_key_files(state_dir)
    if kind == "auto":
        if len(present) > 1:
            raise KeystoreError(
                f"{state_dir} holds several data keys ({_names(present)}); "
                "set the sealer explicitly or remove the unused key"
            )
        if present:
            kind = next(iter(present))
            if kind == "systemd-creds":
                # The credential says which key sealed it; enforce that from now on.
                return _systemd_creds(state_dir, _existing_cred_kind(present[kind]),
                                      tpm_device, runner)
            return _build(kind, state_dir, tpm_device, runner)
        return _strongest(state_dir, tpm_device, runner)
    if kind not in present and present:
        raise KeystoreError(
            f"{state_dir} holds a data key of another sealer ({_names(present)}) "
            f"but the sealer is set to {kind}; set it to match the store"
        )
    return _build(kind, state_dir, tpm_device, runner)


def tpm2_pytss_available() -> bool:
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError:
        return False
    return True


def systemd_creds_available() -> bool:
    # The host secret is root's (/var/lib/systemd/credential.secret, 0400).
    import shutil

    return shutil.which("systemd-creds") is not None and os.geteuid() == 0


# --- choosing ---

def _strongest(state_dir: Path, tpm_device: Path, runner: Sequence[str]) -> DescribedSealer:
    has_tpm = Path(tpm_device).exists()
    if systemd_creds_available():
        return _systemd_creds(state_dir, "host+tpm2" if has_tpm else "host", tpm_device, runner)
    if has_tpm and tpm2_pytss_available():
        return Tpm2Sealer(state_dir, f"device:{tpm_device}")
    return FileSealer(state_dir)


def _build(kind: str, state_dir: Path, tpm_device: Path,
           runner: Sequence[str]) -> DescribedSealer:
    if kind == "systemd-creds":
        with_key = "host+tpm2" if Path(tpm_device).exists() else "host"
        path = state_dir / CRED_FILE
        if os.path.lexists(path):
            with_key = _existing_cred_kind(path)
        return _systemd_creds(state_dir, with_key, tpm_device, runner)
    if kind == "tpm2":
        return Tpm2Sealer(state_dir, f"device:{tpm_device}")
    return FileSealer(state_dir)


def _systemd_creds(state_dir: Path, with_key: str, tpm_device: Path,
                   runner: Sequence[str]) -> SystemdCredsSealer:
    device = str(tpm_device) if "tpm2" in with_key and Path(tpm_device) != TPM_DEVICE else None
    return SystemdCredsSealer(state_dir, with_key, tpm2_device=device, runner=runner)


def _existing_cred_kind(path: Path) -> str:
    sealed = _read_sealed(path)
    if sealed is None:  # removed meanwhile: let the sealer decide when it creates one
        return "auto"
    return _cred_key_kind(path, sealed)


def _names(present: dict[str, Path]) -> str:
    return ", ".join(path.name for path in present.values())


# --- files and formats ---

def _read_sealed(path: Path) -> bytes | None:
    """A sealed key file's bytes, None when absent. Not following symlinks: a
    link planted in the state directory must not choose what we decrypt."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeystoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise KeystoreError(f"{path} is not a regular file")
        chunks, size = [], 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_SEALED_BYTES:
                raise KeystoreError(f"{path} is damaged: far too large for a sealed key")
    except OSError as exc:
        raise KeystoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _cred_key_kind(path: Path, sealed: bytes) -> str:
    try:
        header = base64.b64decode(b"".join(sealed.split()), validate=True)[:16]
    except binascii.Error:
        raise KeystoreError(f"{path} is damaged: not a systemd credential") from None
    kind = _CRED_KEY_IDS.get(header)
    if kind is None:
        raise KeystoreError(
            f"{path} is not sealed with the host secret or a TPM2; refusing it"
        )
    return kind


def _parse_tpm2_file(path: Path, raw: bytes) -> tuple[bytes, bytes, bytes]:
    try:
        doc = json.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != TPM2_FORMAT:
            raise ValueError
        if set(doc) != {"format", "parent", "public", "private"}:
            raise ValueError
        parent = bytes.fromhex(doc["parent"])
        public = base64.b64decode(doc["public"], validate=True)
        private = base64.b64decode(doc["private"], validate=True)
    except (UnicodeDecodeError, ValueError, TypeError, binascii.Error):
        raise KeystoreError(f"{path} is damaged: not a {TPM2_FORMAT} file") from None
    return parent, public, private


def _last_line(stderr: bytes) -> str:
    """systemd-creds' own reason: its last line of stderr (warnings come first)."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "no reason given"
    text = "".join(c if c.isprintable() else "?" for c in lines[-1])
    return text if len(text) <= 200 else text[:197] + "..."


# --- TPM2 through tpm2-pytss (imported only when a TPM2 sealer is used) ---

class _TpmSession:
    """One connection to the TPM with the owner-hierarchy parent loaded and a
    salted, encrypting session started; everything flushed on exit."""

    def __init__(self, tcti: str):
        self.tcti = tcti
        self._t = _tpm2_pytss()
        self._ectx = None
        self._handles: list = []

    def __enter__(self) -> "_TpmSession":
        t = self._t
        try:
            self._ectx = t.ESAPI(self.tcti)
            parent, _public, *_ = self._ectx.create_primary(
                t.TPM2B_SENSITIVE_CREATE(), _parent_template(t)
            )
            self._handles.append(parent)
            self.parent = parent
            self.parent_name = bytes(self._ectx.tr_get_name(parent).marshal())
            session = self._ectx.start_auth_session(
                parent, t.ESYS_TR.NONE, t.TPM2_SE.HMAC,
                t.TPMT_SYM_DEF(algorithm=t.TPM2_ALG.AES, keyBits=t.TPMU_SYM_KEY_BITS(aes=128),
                               mode=t.TPMU_SYM_MODE(aes=t.TPM2_ALG.CFB)),
                t.TPM2_ALG.SHA256,
            )
            self._handles.append(session)
            self._ectx.trsess_set_attributes(
                session,
                t.TPMA_SESSION.DECRYPT | t.TPMA_SESSION.ENCRYPT | t.TPMA_SESSION.CONTINUESESSION,
            )
            self.session = session
        except Exception as exc:
            self._close()
            raise self._error("cannot open", exc) from None
        return self

    def __exit__(self, *exc_info) -> None:
        self._close()

    def seal(self, key: bytes) -> tuple[bytes, bytes]:
        t = self._t
        attrs = (t.TPMA_OBJECT.FIXEDTPM | t.TPMA_OBJECT.FIXEDPARENT
                 | t.TPMA_OBJECT.USERWITHAUTH | t.TPMA_OBJECT.NODA)
        template = t.TPM2B_PUBLIC.parse("keyedhash", objectAttributes=attrs)
        sensitive = t.TPM2B_SENSITIVE_CREATE(
            t.TPMS_SENSITIVE_CREATE(data=t.TPM2B_SENSITIVE_DATA(key))
        )
        try:
            private, public, *_ = self._ectx.create(
                self.parent, sensitive, template, session1=self.session
            )
        except Exception as exc:
            raise self._error("cannot seal the key with", exc) from None
        return bytes(public.marshal()), bytes(private.marshal())

    def unseal(self, public: bytes, private: bytes) -> bytes:
        t = self._t
        try:
            pub, used_pub = t.TPM2B_PUBLIC.unmarshal(public)
            priv, used_priv = t.TPM2B_PRIVATE.unmarshal(private)
            if used_pub != len(public) or used_priv != len(private):
                raise ValueError
        except Exception:
            raise KeystoreError(f"the sealed key for {self.tcti} is damaged") from None
        try:
            item = self._ectx.load(self.parent, priv, pub, session1=self.session)
            self._handles.append(item)
            return bytes(self._ectx.unseal(item, session1=self.session))
        except Exception as exc:
            raise self._error("cannot unseal the key with", exc) from None

    def _close(self) -> None:
        if self._ectx is None:
            return
        for handle in reversed(self._handles):
            try:
                self._ectx.flush_context(handle)
            except Exception:
                pass  # best effort: the resource manager drops them with the connection
        self._handles.clear()
        try:
            self._ectx.close()
        except Exception:
            pass
        self._ectx = None

    def _error(self, doing: str, exc: Exception) -> KeystoreError:
        reason = " ".join(str(exc).split()) or exc.__class__.__name__
        return KeystoreError(f"{doing} TPM2 {self.tcti}: {reason[:200]}")


def _parent_template(t):
    # ECC P-256 storage key: every TPM 2.0 (PC Client profile) has it, and
    # deriving it from the owner seed is fast, unlike an RSA primary.
    attrs = (t.TPMA_OBJECT.FIXEDTPM | t.TPMA_OBJECT.FIXEDPARENT
             | t.TPMA_OBJECT.SENSITIVEDATAORIGIN | t.TPMA_OBJECT.USERWITHAUTH
             | t.TPMA_OBJECT.RESTRICTED | t.TPMA_OBJECT.DECRYPT | t.TPMA_OBJECT.NODA)
    return t.TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=attrs)


def _tpm2_pytss():
    try:
        import tpm2_pytss
        from tpm2_pytss import constants, types
    except ImportError:
        raise KeystoreError(
            "the tpm2 sealer needs tpm2-pytss (pip install 'mtcd[tpm2]'; "
            "Debian: libtss2-dev to build it)"
        ) from None
    except OSError as exc:  # the tss2 shared libraries are missing
        raise KeystoreError(f"tpm2-pytss cannot load the TSS2 libraries: {exc}") from None

    class _Names:
        ESAPI = tpm2_pytss.ESAPI
        ESYS_TR = constants.ESYS_TR
        TPM2_SE = constants.TPM2_SE
        TPM2_ALG = constants.TPM2_ALG
        TPMA_OBJECT = constants.TPMA_OBJECT
        TPMA_SESSION = constants.TPMA_SESSION
        TPM2B_PUBLIC = types.TPM2B_PUBLIC
        TPM2B_PRIVATE = types.TPM2B_PRIVATE
        TPM2B_SENSITIVE_CREATE = types.TPM2B_SENSITIVE_CREATE
        TPM2B_SENSITIVE_DATA = types.TPM2B_SENSITIVE_DATA
        TPMA_NV = constants.TPMA_NV
        TPM2_NT = constants.TPM2_NT
        TPM2_CAP = constants.TPM2_CAP
        TPM2B_NV_PUBLIC = types.TPM2B_NV_PUBLIC
        TPMS_NV_PUBLIC = types.TPMS_NV_PUBLIC
        TPMS_SENSITIVE_CREATE = types.TPMS_SENSITIVE_CREATE
        TPMT_SYM_DEF = types.TPMT_SYM_DEF
        TPMU_SYM_KEY_BITS = types.TPMU_SYM_KEY_BITS
        TPMU_SYM_MODE = types.TPMU_SYM_MODE

    return _Names


def open_keystore(state_dir: Path, kind: str = "auto") -> tuple[keystore.Keystore, DescribedSealer]:
    """The keystore of `state_dir`, sealed as configured (`[keystore] sealer`)."""
    sealer = choose_sealer(kind, Path(state_dir))
    return keystore.Keystore.open(state_dir, sealer), sealer
