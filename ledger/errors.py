"""Stable error codes for transaction and block rejection (DESIGN §4).

Every rejection carries a machine-readable `code` (a stable string: clients, the RPC and tests match on
it, so never rename one) and a human `message` (free text, may change). `TxError` rejects one
transaction; `BlockError` rejects a whole block (a proposer must only include valid transactions, so
one invalid transaction makes the block invalid).
"""

from __future__ import annotations

# ---- decoding / stateless
MALFORMED_TX = "malformed_tx"  # not the canonical encoding of a signed transaction / payload
UNSUPPORTED_VERSION = "unsupported_version"
WRONG_CHAIN_ID = "wrong_chain_id"
UNKNOWN_KIND = "unknown_kind"  # kind never heard of
KIND_NOT_ENABLED = "kind_not_enabled"  # reserved kind (pocl.*) not registered on this executor
TX_TOO_LARGE = "tx_too_large"
BAD_SIGNATURE = "bad_signature"
FEE_TOO_LOW = "fee_too_low"
AMOUNT_NOT_POSITIVE = "amount_not_positive"
AMOUNT_OVERFLOW = "amount_overflow"  # an amount, fee, nonce or resulting balance reaches 2**63
SELF_TRANSFER = "self_transfer"
# ---- stateful
NONCE_TOO_LOW = "nonce_too_low"
NONCE_TOO_HIGH = "nonce_too_high"
INSUFFICIENT_BALANCE = "insufficient_balance"
INSUFFICIENT_STAKE = "insufficient_stake"
TOO_MANY_UNBONDING = "too_many_unbonding"  # account already has the maximum number of unbonding entries
INVALID_EVIDENCE = "invalid_evidence"
EVIDENCE_TOO_OLD = "evidence_too_old"
DUPLICATE_EVIDENCE = "duplicate_evidence"
TX_REJECTED = "tx_rejected"  # generic code for registered kinds that need no specific one
# ---- roles (validator.create, miner.register, miner.unregister)
VALIDATOR_EXISTS = "validator_exists"  # the operator already has a consensus key (it cannot be changed)
CONSENSUS_KEY_IN_USE = "consensus_key_in_use"  # another operator registered this consensus key
CONSENSUS_KEY_IS_ACCOUNT_KEY = "consensus_key_is_account_key"  # the consensus key must be a separate key
BAD_PROOF_OF_POSSESSION = "bad_proof_of_possession"  # the consensus key did not sign (chain id, operator)
MINER_REGISTERED = "miner_registered"  # miner.register of an account that is already a registered miner
MINER_NOT_REGISTERED = "miner_not_registered"  # miner.unregister of an account that is not registered

ALL_TX_CODES = frozenset(
    {
        MALFORMED_TX,
        UNSUPPORTED_VERSION,
        WRONG_CHAIN_ID,
        UNKNOWN_KIND,
        KIND_NOT_ENABLED,
        TX_TOO_LARGE,
        BAD_SIGNATURE,
        FEE_TOO_LOW,
        AMOUNT_NOT_POSITIVE,
        AMOUNT_OVERFLOW,
        SELF_TRANSFER,
        NONCE_TOO_LOW,
        NONCE_TOO_HIGH,
        INSUFFICIENT_BALANCE,
        INSUFFICIENT_STAKE,
        TOO_MANY_UNBONDING,
        INVALID_EVIDENCE,
        EVIDENCE_TOO_OLD,
        DUPLICATE_EVIDENCE,
        TX_REJECTED,
        VALIDATOR_EXISTS,
        CONSENSUS_KEY_IN_USE,
        CONSENSUS_KEY_IS_ACCOUNT_KEY,
        BAD_PROOF_OF_POSSESSION,
        MINER_REGISTERED,
        MINER_NOT_REGISTERED,
    }
)

# ---- block-level codes (BlockError.code)
BLOCK_WRONG_HEIGHT = "wrong_height"
BLOCK_TXS_ROOT_MISMATCH = "txs_root_mismatch"
BLOCK_STATE_ROOT_MISMATCH = "state_root_mismatch"
BLOCK_TOO_MANY_TXS = "too_many_txs"
BLOCK_TOO_LARGE = "block_too_large"
BLOCK_INVALID_TX = "invalid_tx"


class TxError(Exception):
    """A rejected transaction: `code` is stable, `message` is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TxError) and (self.code, self.message) == (other.code, other.message)

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def __repr__(self) -> str:
        return f"TxError({self.code!r}, {self.message!r})"


class BlockError(Exception):
    """An invalid block. For `invalid_tx`, `tx_index` and `tx_error` say which tx and why."""

    def __init__(
        self, code: str, message: str, tx_index: int | None = None, tx_error: TxError | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.tx_index = tx_index
        self.tx_error = tx_error

    @property
    def reason(self) -> str:
        return str(self)
