"""Drop-ins: `<config>.d/*.toml` over the main file, in lexical order, each
file checked as strictly as the main one and named in its complaints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mtcd.config import load_config
from mtcd.errors import ConfigError

MAIN = '[modem]\nport = "/dev/ttyUSB2"\nbaudrate = 9600\n[policy]\nmin_retries = 3\n'


@pytest.fixture
def main(tmp_path) -> Path:
    path = tmp_path / "mtcd.toml"
    path.write_text(MAIN)
    (tmp_path / "mtcd.toml.d").mkdir()
    return path


def drop_in(main: Path, name: str, text: str) -> Path:
    path = Path(f"{main}.d") / name
    path.write_text(text)
    return path


def test_drop_in_merges_tables_key_by_key(main):
    drop_in(main, "10-port.toml", '[modem]\nport = "/dev/ttyMODEM"\n')
    config = load_config(main)
    assert config.modem.port == "/dev/ttyMODEM"
    assert config.modem.baudrate == 9600  # the main file's key in the same table stays
    assert config.policy.min_retries == 3


def test_later_drop_in_wins_in_lexical_order(main):
    # Created out of order: the order is the names', not the directory's.
    drop_in(main, "20-b.toml", '[datalink]\napn = "second"\n')
    drop_in(main, "10-a.toml", '[datalink]\napn = "first"\ncid = 4\n')
    config = load_config(main)
    assert config.datalink.apn == "second"
    assert config.datalink.cid == 4


def test_only_toml_names_are_drop_ins(main):
    drop_in(main, "10-a.toml.dpkg-old", "this is not toml [")
    drop_in(main, ".20-editor.toml", "neither [")
    drop_in(main, "README", "notes")
    assert load_config(main).modem.port == "/dev/ttyUSB2"


def test_no_drop_in_directory_is_fine(tmp_path):
    path = tmp_path / "mtcd.toml"
    path.write_text(MAIN)
    assert load_config(path).modem.baudrate == 9600


def test_drop_in_may_supply_a_required_key(tmp_path):
    path = tmp_path / "mtcd.toml"
    path.write_text("[policy]\nmin_retries = 2\n")
    (tmp_path / "mtcd.toml.d").mkdir()
    drop_in(path, "port.toml", '[modem]\nport = "/dev/ttyS0"\n')
    assert load_config(path).modem.port == "/dev/ttyS0"


def test_unknown_key_in_drop_in_names_the_drop_in(main):
    bad = drop_in(main, "50-typo.toml", "[policy]\nmin_retry = 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert str(err.value) == f"{bad}: unknown key 'policy.min_retry'"


def test_bad_value_in_drop_in_names_the_drop_in(main):
    bad = drop_in(main, "50-retries.toml", "[policy]\nmin_retries = 7\n")
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert str(err.value).startswith(f"{bad}: policy.min_retries must be an integer from 2 to 3")


def test_bad_value_in_main_file_overridden_by_drop_in_is_not_an_error(main):
    main.write_text(MAIN.replace("min_retries = 3", "min_retries = 7"))
    drop_in(main, "10-fix.toml", "[policy]\nmin_retries = 2\n")
    assert load_config(main).policy.min_retries == 2


def test_drop_in_that_needs_a_key_of_another_file_names_itself(main):
    bad = drop_in(main, "10-cmd.toml", '[datalink]\nbackend = "command"\n')
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert str(err.value).startswith(f"{bad}: datalink.up is required")


def test_syntax_error_in_drop_in_names_file_and_line(main):
    bad = drop_in(main, "10-broken.toml", "[modem]\nport = \n")
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert str(err.value).startswith(f"{bad}: line 2:")


def test_drop_in_that_is_not_a_regular_file(main):
    fifo = Path(f"{main}.d") / "10-fifo.toml"
    os.mkfifo(fifo)  # no writer: must be refused at once, not waited on
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert str(err.value) == f"{fifo}: not a regular file"


def test_drop_in_that_is_a_directory(main):
    where = Path(f"{main}.d") / "10-dir.toml"
    where.mkdir()
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert str(err.value) == f"{where}: not a regular file"


def test_drop_in_too_large_is_refused(main):
    big = drop_in(main, "10-big.toml", "# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert str(err.value).startswith(f"{big}: larger than")


def test_dangling_drop_in_link(main):
    link = Path(f"{main}.d") / "10-gone.toml"
    link.symlink_to(main.parent / "nowhere.toml")
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert str(err.value) == f"{link}: no such file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a 0000 file anyway")
def test_unreadable_drop_in(main):
    bad = drop_in(main, "10-secret.toml", "[policy]\n")
    bad.chmod(0)
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert str(err.value).startswith(f"{bad}: cannot read:")


def test_drop_in_directory_that_is_a_file(tmp_path):
    path = tmp_path / "mtcd.toml"
    path.write_text(MAIN)
    (tmp_path / "mtcd.toml.d").write_text("")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{tmp_path / 'mtcd.toml.d'}: not a directory"


def test_section_replaced_by_a_non_table_in_drop_in(main):
    bad = drop_in(main, "10-flat.toml", 'modem = "ttyUSB2"\n')
    with pytest.raises(ConfigError) as err:
        load_config(main)
    assert str(err.value).startswith(f"{bad}: modem must be a table")


def test_relative_state_dir_is_taken_from_the_file_that_sets_it(main):
    drop_in(main, "10-state.toml", 'state_dir = "state"\n')
    assert load_config(main).state_dir == Path(f"{main}.d").absolute() / "state"
