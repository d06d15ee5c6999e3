"""Genesis schema: validation names the bad field, canonical hash, shipped localnet."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pocl.genesis.schema import (
    HASHED_ONLY_IF_SET,
    LOCALNET_VALIDATOR_COUNT,
    MAP_MARKER,
    GenesisError,
    GenesisValidator,
    build_genesis,
    build_localnet_genesis,
    load_genesis,
    localnet_consensus_key,
    localnet_validator_key,
    parse_genesis,
    parse_genesis_text,
    shipped_genesis_path,
)
from pocl.ledger.codec import decode
from pocl.ledger.hashing import TAG_GENESIS, tagged_hash
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.roles import consensus_pubkey_of, is_miner, miners, operator_of

V0 = PrivateKey.from_seed_text("golden-v0")
C0 = PrivateKey.from_seed_text("golden-v0/consensus")
A0 = PrivateKey.from_seed_text("golden-a")


def golden() -> Any:
    return build_genesis(
        "golden-1",
        [GenesisValidator(V0.pubkey, C0.pubkey, 5000, 7, miner=True)],
        accounts=[(A0.address, 42)],
        genesis_time_ms=1_700_000_000_000,
        pocl={"rounds": {"commit_blocks": 3}, "model": "cnn"},
    )


def valid_doc() -> dict[str, Any]:
    return copy.deepcopy(golden().to_json())


# Pinned: changes only when the genesis encoding or ChainParams' fields/defaults change on purpose.
# Issue 14: encoding version 2, accounts carry their consensus key and miner flag.
GOLDEN_HASH = "52024ba34f2bfa53ef4c9973c3a94f2a84c41a2f9774e3fd0f2151113eea89ee"


def test_golden_hash_vector() -> None:
    assert golden().hash.hex() == GOLDEN_HASH


def test_canonical_encoding_layout() -> None:
    g = golden()
    decoded = decode(g.canonical_bytes())
    version, chain_id, time_ms, accounts, params, pocl = decoded
    assert (version, chain_id, time_ms) == (2, "golden-1", 1_700_000_000_000)
    assert accounts == sorted(accounts, key=lambda a: a[0])  # sorted by address
    # [address, balance, stake, pubkey, consensus_pubkey, miner]
    assert [V0.address, 7, 5000, V0.pubkey, C0.pubkey, True] in accounts
    assert [A0.address, 42, 0, None, None, False] in accounts
    # defaults filled in, except params added after version 2 (hashed only when set: see the next test)
    assert params == [[k, v] for k, v in sorted(ChainParams().to_json().items()) if k not in HASHED_ONLY_IF_SET]
    assert pocl == [MAP_MARKER, [["model", "cnn"], ["rounds", [MAP_MARKER, [["commit_blocks", 3]]]]]]
    assert g.hash == tagged_hash(TAG_GENESIS, g.canonical_bytes())


def test_later_params_keep_old_genesis_hashes_until_set() -> None:
    """The PBTS params came after encoding version 2: a genesis without them (every file written before
    them, the golden vector above) keeps its hash; spelled out at their defaults too; set, they count."""
    doc = valid_doc()
    without = copy.deepcopy(doc)
    for key in HASHED_ONLY_IF_SET:
        without["params"].pop(key, None)
    base = parse_genesis(without).hash
    assert base.hex() == GOLDEN_HASH
    explicit = copy.deepcopy(without)
    explicit["params"] |= {k: getattr(ChainParams(), k) for k in HASHED_ONLY_IF_SET}
    assert parse_genesis(explicit).hash == base
    for key in HASHED_ONLY_IF_SET:
        changed = copy.deepcopy(without)
        changed["params"][key] = getattr(ChainParams(), key) + 1
        g = parse_genesis(changed)
        assert g.hash != base
        assert [key, getattr(ChainParams(), key) + 1] in decode(g.canonical_bytes())[4]


def test_hash_ignores_layout_but_not_content() -> None:
    doc = valid_doc()
    base = parse_genesis(doc).hash
    reordered = dict(reversed(list(doc.items())))
    reordered["accounts"] = list(reversed(doc["accounts"]))
    reordered["_comment"] = "comments are not hashed"
    assert parse_genesis(reordered).hash == base
    no_params = {k: v for k, v in doc.items() if k != "params"}
    assert parse_genesis(no_params).hash == base  # defaults filled in == explicit defaults
    for change in (
        lambda d: d.__setitem__("chain_id", "golden-2"),
        lambda d: d.__setitem__("genesis_time_ms", 1),
        lambda d: d["accounts"][0].__setitem__("balance", d["accounts"][0]["balance"] + 1),
        lambda d: d["params"].__setitem__("min_fee", 5),
        lambda d: d["pocl"].__setitem__("model", "mlp"),
        lambda d: d["accounts"][_acc(d, V0)].__setitem__("miner", False),
        lambda d: d["accounts"][_acc(d, V0)].__setitem__("consensus_pubkey", A0.pubkey.hex()),
    ):
        other = copy.deepcopy(doc)
        change(other)
        assert parse_genesis(other).hash != base


def test_pocl_dict_and_list_of_pairs_hash_differently() -> None:
    a, b = valid_doc(), valid_doc()
    a["pocl"] = {"x": {"k": 1}}
    b["pocl"] = {"x": [["k", 1]]}
    assert parse_genesis(a).hash != parse_genesis(b).hash


def test_json_round_trip() -> None:
    g = golden()
    assert parse_genesis_text(g.to_json_text()) == g


def _acc(doc: dict[str, Any], pubkey_of: PrivateKey) -> int:
    return next(i for i, a in enumerate(doc["accounts"]) if a["pubkey"] == pubkey_of.pubkey.hex())


def _plain(doc: dict[str, Any]) -> int:
    return next(i for i, a in enumerate(doc["accounts"]) if a["pubkey"] is None)


def _set(path: str, value: Any):
    def mutate(doc: dict[str, Any]) -> str:
        keys = path.split(".")
        target = doc
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
        return path

    return mutate


def _account(field: str, value: Any, *, staked: bool = True):
    def mutate(doc: dict[str, Any]) -> str:
        i = _acc(doc, V0) if staked else _plain(doc)
        if value is DELETE:
            del doc["accounts"][i][field]
        else:
            doc["accounts"][i][field] = value
        return f"accounts[{i}].{field}"

    return mutate


DELETE = object()


def _duplicate(doc: dict[str, Any]) -> str:
    doc["accounts"].append(dict(doc["accounts"][0]))
    return f"accounts[{len(doc['accounts']) - 1}].address"


def _no_validator(doc: dict[str, Any]) -> str:
    doc["accounts"][_acc(doc, V0)]["stake"] = 999
    return "accounts"


def _staked_without_consensus_key(doc: dict[str, Any]) -> str:
    del doc["accounts"][_acc(doc, V0)]["consensus_pubkey"]  # staking alone makes no validator
    return "accounts"


def _consensus_key_reused(doc: dict[str, Any]) -> str:
    i = _plain(doc)
    doc["accounts"][i]["consensus_pubkey"] = C0.pubkey.hex()
    return f"accounts[{i}].consensus_pubkey"


def _delete(key: str):
    def mutate(doc: dict[str, Any]) -> str:
        del doc[key]
        return key

    return mutate


CASES = {
    "chain_id charset": (_set("chain_id", "bad chain!"), "must be 1..64 characters"),
    "chain_id too long": (_set("chain_id", "c" * 65), "must be 1..64 characters"),
    "chain_id empty": (_set("chain_id", ""), "must be 1..64"),
    "chain_id type": (_set("chain_id", 7), "must be a string"),
    "chain_id missing": (_delete("chain_id"), "required"),
    "time negative": (_set("genesis_time_ms", -1), "non-negative integer"),
    "time float": (_set("genesis_time_ms", 1.5), "non-negative integer"),
    "accounts missing": (_delete("accounts"), "required"),
    "accounts not list": (_set("accounts", {}), "must be a JSON array"),
    "unknown top-level": (_set("extra", 1), "unknown field"),
    "unknown param": (_set("params.no_such_param", 1), "unknown parameter"),
    "param not int": (_set("params.min_fee", "1"), "must be an integer"),
    "param negative": (_set("params.min_fee", -1), "must not be negative"),
    "param bool": (_set("params.min_fee", True), "must be an integer"),
    "param bps over 100%": (_set("params.double_sign_slash_bps", 10_001), "at most 10000"),
    "params not object": (_set("params", []), "must be a JSON object"),
    "pocl float": (_set("pocl.lr", 0.01), "floats are not allowed"),
    "pocl not object": (_set("pocl", [1]), "must be a JSON object"),
    "pubkey missing when staked": (_account("pubkey", None), "required when stake > 0"),
    "pubkey bad hex": (_account("pubkey", "zz" * 32), "not valid hex"),
    "pubkey wrong length": (_account("pubkey", "ab" * 31), "must be 32 bytes"),
    "address mismatch": (_account("address", "0x" + "11" * 20), "does not match pubkey"),
    "address bad hex": (_account("address", "0xnothex"), "not hex"),
    "address wrong length": (_account("address", "0x" + "11" * 19), "must be 20 bytes"),
    "address missing": (_account("address", DELETE), "required"),
    "balance missing": (_account("balance", DELETE), "required"),
    "balance negative": (_account("balance", -5, staked=False), "must not be negative"),
    "balance float": (_account("balance", 1.0), "must be an integer amount"),
    "balance string": (_account("balance", "10"), "must be an integer amount"),
    "stake negative": (_account("stake", -1), "must not be negative"),
    "balance huge": (_account("balance", 2**64), "too large"),
    "account unknown field": (_account("nickname", "x"), "unknown field"),
    "duplicate account": (_duplicate, "duplicate of accounts["),
    "no validator": (_no_validator, "at least one validator is required"),
    "staked, no consensus key": (_staked_without_consensus_key, "with a consensus_pubkey and stake >="),
    "consensus key is the account key": (
        _account("consensus_pubkey", V0.pubkey.hex()),
        "must differ from the account key",
    ),
    "consensus key bad length": (_account("consensus_pubkey", "ab" * 31), "must be 32 bytes"),
    "consensus key used twice": (_consensus_key_reused, "already the consensus key of accounts["),
    "miner not bool": (_account("miner", 1), "must be true or false"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_names_the_bad_field(case: str) -> None:
    mutate, reason = CASES[case]
    doc = valid_doc()
    field = mutate(doc)
    with pytest.raises(GenesisError) as info:
        parse_genesis(doc)
    err = info.value
    expected_field = field if case != "unknown top-level" else "extra"
    assert err.field == expected_field, str(err)
    assert reason in err.reason
    assert str(err).startswith(f"{expected_field}: ")


def test_total_supply_overflow() -> None:
    doc = valid_doc()
    for a in doc["accounts"]:
        a["balance"] = 2**62
    with pytest.raises(GenesisError, match="total supply"):
        parse_genesis(doc)


def test_duplicate_json_keys_rejected() -> None:
    text = '{"chain_id": "a", "chain_id": "b"}'
    with pytest.raises(GenesisError, match="chain_id: duplicate key"):
        parse_genesis_text(text)


def test_load_genesis_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_text("{not json")
    with pytest.raises(GenesisError, match=rf"invalid genesis {path}: not valid JSON .*line 1"):
        load_genesis(path)
    doc = valid_doc()
    doc["chain_id"] = "x y"
    path.write_text(json.dumps(doc))
    with pytest.raises(GenesisError, match=rf"invalid genesis {path}: chain_id: "):
        load_genesis(path)
    with pytest.raises(FileNotFoundError):
        load_genesis(tmp_path / "missing.json")


def test_shipped_localnet_validates_and_matches_builder() -> None:
    g = load_genesis(shipped_genesis_path("localnet"))
    assert g == build_localnet_genesis()
    assert g.chain_id == "pocl-devnet"
    assert "INSECURE" in g.comment
    keys = [localnet_validator_key(i) for i in range(LOCALNET_VALIDATOR_COUNT)]
    assert {(v.address, v.pubkey) for v in g.validators} == {(k.address, k.pubkey) for k in keys}
    consensus = {localnet_consensus_key(i).pubkey for i in range(LOCALNET_VALIDATOR_COUNT)}
    assert {v.consensus_pubkey for v in g.validators} == consensus


def test_build_genesis_validates() -> None:
    with pytest.raises(GenesisError, match="at least one validator"):
        build_genesis("c", [GenesisValidator(V0.pubkey, C0.pubkey, 1, 0)])
    with pytest.raises(GenesisError, match="chain_id"):
        build_genesis("bad id", [GenesisValidator(V0.pubkey, C0.pubkey, 5000, 0)])
    with pytest.raises(TypeError, match="GenesisValidator"):  # the tuples of before explicit roles
        build_genesis("c", [(V0.pubkey, 5000, 0)])  # type: ignore[list-item]


def test_genesis_validators_need_a_consensus_key_and_stake() -> None:
    staked_only = PrivateKey.from_seed_text("golden-staked-only")
    g = build_genesis(
        "c",
        [GenesisValidator(V0.pubkey, C0.pubkey, 5000, 0)],
        accounts=[GenesisAccount(staked_only.address, 0, 9_000, staked_only.pubkey, miner=True)],
    )
    assert [a.address for a in g.validators] == [V0.address]  # stake alone makes no validator
    assert [a.address for a in g.miners] == [staked_only.address]


def test_initial_state_from_genesis_writes_roles() -> None:
    state = golden().initial_state()
    assert consensus_pubkey_of(state, V0.address) == C0.pubkey
    assert operator_of(state, C0.address) == V0.address
    assert miners(state) == [V0.address] and is_miner(state, V0.address) and not is_miner(state, A0.address)
    [val] = state.validator_set()
    assert (val.address, val.pubkey, val.power, val.operator) == (C0.address, C0.pubkey, 5000, V0.address)
