import json
import pickle

import pytest

from mtcd.secret import Pin, Puk


def test_pin_never_shows_its_value():
    pin = Pin("48151623")
    for shown in (str(pin), repr(pin), f"{pin}", f"{pin!r}", "%s" % (pin,), str([pin]), str({"p": pin})):
        assert "48151623" not in shown
    assert pin.reveal() == "48151623"


def test_pin_refuses_serialisation():
    pin = Pin("4815")
    with pytest.raises(TypeError):
        pickle.dumps(pin)
    with pytest.raises(TypeError):
        json.dumps(pin)
    with pytest.raises(TypeError):
        hash(pin)


@pytest.mark.parametrize("bad, problem", [("123", "4 to 8"), ("123456789", "4 to 8"), ("12a4", "digits"), ("", "digits"), ("１２３４", "digits")])
def test_pin_validation_messages_do_not_echo_the_value(bad, problem):
    with pytest.raises(ValueError) as info:
        Pin(bad)
    assert problem in str(info.value)
    if bad:
        assert bad not in str(info.value)


def test_puk_is_eight_digits():
    assert Puk("12345678").reveal() == "12345678"
    with pytest.raises(ValueError, match="8 digits"):
        Puk("1234")


def test_generated_pins_are_random_digits():
    pins = {Pin.generate(8).reveal() for _ in range(50)}
    assert len(pins) > 45
    assert all(len(p) == 8 and p.isdigit() for p in pins)
    with pytest.raises(ValueError):
        Pin.generate(3)


def test_equality_is_by_value_and_immutable():
    assert Pin("1234") == Pin("1234")
    assert Pin("1234") != Pin("4321")
    with pytest.raises(AttributeError):
        Pin("1234")._value = "9999"
