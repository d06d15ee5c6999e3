"""The JSON the RPC answers with, as TypedDicts: the handlers and `json_view` build these, and the OpenAPI
document's response schemas are generated from them (`schema.py`), so a typed client can be generated
and `tests/rpc/test_openapi_schemas.py` checks real responses against the schemas.

Conventions: hashes, keys and signatures are lowercase hex strings (no `0x`); addresses are `0x` + 40
hex digits; amounts and heights are integers. A key that is not always present is `NotRequired`.
"""

# No `from __future__ import annotations` here: Python 3.11's TypedDict sees `NotRequired` only in
# evaluated annotations (with strings every key would count as required).
from typing import Any, NotRequired, TypedDict

# --------------------------------------------------------------------------- status, peers


class ConsensusSummary(TypedDict):
    height: int
    round: int
    step: str
    locked_round: int
    valid_round: int
    pending_timeouts: int
    own_messages: int


class MempoolCount(TypedDict):
    txs: int


class OwnValidator(TypedDict):
    address: str  # the consensus key's address (what commit signatures and block proposers name)
    pubkey: str  # the consensus public key
    operator: str  # the operator account it signs for ("" when neither registered nor known)
    registered: bool  # a validator record (`tx create-validator`) binds this consensus key
    voting_power: int
    active: bool


class ReadyView(TypedDict):
    """`GET /ready` (200 ready, 503 not) and `/status`'s `readiness`: see node/readiness.py."""

    ready: bool
    reasons: list[str]  # catching_up | consensus_stalled | disk_low | store_failed
    detail: list[str]  # one sentence per reason
    height: int
    best_peer_height: int  # highest height a peer reported to block sync (0: none known)
    lag_blocks: int
    seconds_since_block: float
    disk_free_bytes: int | None


class StatusView(TypedDict):
    chain_id: str
    genesis_hash: str
    node_id: str
    moniker: str
    height: int
    earliest_block_height: int  # lowest height whose block this node still has (1 unless pruned)
    latest_block_hash: str
    latest_block_time_ms: int
    state_root: str
    peers: int
    syncing: bool
    consensus: ConsensusSummary | None
    mempool: MempoolCount
    validator: OwnValidator | None
    p2p: str
    uptime_s: float
    readiness: ReadyView


class HealthView(TypedDict):
    ok: bool
    height: int


class PeerView(TypedDict):
    node_id: str
    outbound: bool
    persistent: bool
    remote_ip: str
    best_height_at_connect: int
    connected_s: float
    listen_addr: str
    agent: str


class PeersView(TypedDict):
    peers: list[PeerView]


class NetInfoView(TypedDict):
    listening: bool
    listen_addrs: list[str]  # host:port, the advertised address first, then the bound one if different
    p2p_address: str  # node_id@host:port: what a peer puts in persistent_peers
    node_id: str
    moniker: str
    n_peers: int
    n_outbound: int
    n_inbound: int
    peers: list[PeerView]


# --------------------------------------------------------------------------- chain data


class HeaderView(TypedDict):
    height: int
    time_ms: int
    prev_hash: str
    proposer: str
    txs_root: str
    state_root: str
    last_commit_hash: str
    round_info: str


class TxView(TypedDict):
    hash: str
    kind: str
    chain_id: str
    sender: str
    nonce: int
    fee: int
    payload: Any  # the kind's payload: bytes as hex (20 bytes: an address), longer than 4 KiB: "<N bytes>"
    size: int


class RawTxView(TypedDict):
    raw: str


class CommitSignatureView(TypedDict):
    validator: str
    pubkey: str
    signature: str


class CommitView(TypedDict):
    height: int
    round: int
    block_hash: str
    hash: str
    signatures: list[CommitSignatureView]


class BlockView(TypedDict):
    hash: str
    header: HeaderView
    num_txs: int
    txs: NotRequired[list[TxView | RawTxView]]
    last_commit: CommitView | None


class LocatedTxView(TxView):
    """A tx with where it is: `status` committed (with `height`, `index`) or pending."""

    status: str
    height: NotRequired[int]
    index: NotRequired[int]


class BlockTxsView(TypedDict):
    height: int
    hash: str
    count: int
    txs: list[LocatedTxView]


class TxSearchView(TypedDict):
    """Committed txs of an account, newest first, found in blocks `[from_height, to_height]`; continue
    with `?to_height=next_to_height` while it is not null."""

    account: str
    from_height: int
    to_height: int
    count: int
    txs: list[LocatedTxView]
    next_to_height: int | None


class SubmitView(TypedDict):
    hash: str
    new: bool
    status: NotRequired[str]  # with ?wait=commit: "committed"
    height: NotRequired[int]
    index: NotRequired[int]


class BatchError(TypedDict):
    index: int
    hash: str
    code: str
    message: str


class BatchView(TypedDict):
    accepted: int
    new: int
    errors: list[BatchError]


class FaucetView(TypedDict):
    """A faucet grant: the transfer's hash (submitted, not yet committed), its amount and recipient."""

    tx_hash: str
    amount: int
    address: str


class Unbonding(TypedDict):
    amount: int
    release_height: int


class AccountView(TypedDict):
    address: str
    exists: bool
    balance: int
    nonce: int
    pending_nonce: int
    pubkey: NotRequired[str | None]
    stake: int
    unbonding: list[Unbonding]
    jailed_until_height: int
    jailed_until_round: int
    slashed_total: int


class ValidatorView(TypedDict):
    address: str  # the consensus address (commit signatures, block proposers)
    pubkey: str  # the consensus public key
    operator: str  # the operator account (its stake is the power)
    power: int


class ValidatorsView(TypedDict):
    height: int
    total_power: int
    validators: list[ValidatorView]


class MempoolView(TypedDict):
    count: int
    bytes: int
    txs: list[TxView]


class GenesisView(TypedDict):
    genesis_hash: str
    genesis: dict[str, Any]  # the genesis document, exactly as in genesis.json


# --------------------------------------------------------------------------- PoCL


class Participants(TypedDict):
    eligible: list[str]
    committers: list[str]
    shard_owners: list[str]
    predictors: list[str]
    revealed: list[str]
    voters: list[str]


class ScoreMatrix(TypedDict):
    rows: list[str]
    columns: list[str]
    accuracy_bps: list[list[int | None]]
    valid_voters: list[str]
    baseline_bps: list[int | None]
    information: list[int | None]


class RewardView(TypedDict):
    address: str
    role: str
    amount: int


class SlashView(TypedDict):
    address: str
    kind: str
    slash_bps: int
    jail_rounds: int
    evidence: Any  # the decoded canonical evidence `[kind, round, ...]`, or null
    evidence_hex: str


class RoundView(TypedDict):
    round: int
    phase: str
    start_height: int
    shard_start: int
    predict_start: int
    vote_start: int
    end_height: int
    final: bool
    prev_model_hash: str
    global_model_hash: str
    participants: Participants
    void: bool | None
    reason: str
    scores: dict[str, int | None]
    score_matrix: ScoreMatrix | None
    gains: dict[str, int]
    ranking: list[str]
    winners: list[str]
    rewards: list[RewardView]
    slashes: list[SlashView]
    seed: NotRequired[str]
    model_changed: NotRequired[bool]
    total_reward: NotRequired[int]
    height: NotRequired[int]
    next_round_start: NotRequired[int]


class MinerRewardView(TypedDict):
    round: int
    amount: int  # everything paid to the miner in that round
    roles: list[str]


class MinerPenaltyView(TypedDict):
    round: int
    kind: str
    slash_bps: int
    jail_rounds: int


class MinerView(TypedDict):
    """`/miners/{address}`: an account's standing as a PoCL miner."""

    address: str
    exists: bool
    registered: bool  # `miner.register` (or genesis `miner: true`) and not unregistered since
    stake: int
    min_miner_stake: int
    open_round: int  # the round accepting txs now, 0 when none is open
    eligible_now: bool  # in the open round's eligible set
    next_round: int
    next_round_start: int  # its first height, 0 while it waits for the open round to finish
    eligible_next: bool  # would be eligible if the next round opened on the current state
    not_eligible_reasons: list[str]  # empty when eligible_next
    jailed_until_height: int
    jailed_until_round: int
    missed_rounds: int  # consecutive eligible rounds without a COMMIT (jailed at max_missed_rounds)
    max_missed_rounds: int
    last_reward: MinerRewardView | None
    last_penalty: MinerPenaltyView | None
    height: int


class RoundSummaryView(TypedDict):
    """One round in `/rounds`: its phase and outcome in a line, and the accuracies the chart plots."""

    round: int
    phase: str
    final: bool
    void: bool | None
    start_height: int
    end_height: int
    eligible: int
    committers: int
    predictors: int
    voters: int
    winners: list[str]
    total_reward: int
    slashes: int
    global_model_hash: str
    baseline_median_bps: int | None  # G_{r-1}'s accuracy, median over the valid voters' shards
    score_median_bps: int | None  # the candidates' median scores, median over candidates
    best_score_bps: int | None


class RoundsView(TypedDict):
    """`/rounds`: the newest rounds this node keeps, newest first, and where the protocol stands."""

    height: int
    open_round: int  # 0 when none is open
    phase: str  # the open round's phase ("" when none is open)
    next_round_start: int  # first height of the next round when none is open (0 otherwise)
    model_round: int  # r of the current global model G_r (0 = genesis)
    model_hash: str
    rounds: list[RoundSummaryView]


class LeaderView(TypedDict):
    address: str
    eligible: int  # rounds (of those counted) it was eligible in
    committed: int
    wins: int
    rewards: int  # total paid to it
    rewarded_rounds: int
    slashes: int
    slash_kinds: list[str]
    mean_score_bps: int | None  # over the rounds it was scored in
    best_score_bps: int | None
    last_score_bps: int | None  # in the newest round it was scored in


class LeaderboardView(TypedDict):
    """`/miners`: every miner seen in the newest final rounds, most rewarded first."""

    from_round: int
    to_round: int
    rounds: int  # final rounds counted
    miners: list[LeaderView]


class AccountSlashView(TypedDict):
    round: int
    kind: str
    slash_bps: int
    jail_rounds: int
    evidence: Any


class AccountRoundsView(TypedDict):
    """`/accounts/{address}/rounds`: an account's rewards, wins and slashes in the newest final rounds."""

    address: str
    from_round: int
    to_round: int
    wins: list[int]
    rewards: list[MinerRewardView]
    slashes: list[AccountSlashView]


class SearchView(TypedDict):
    """`/search`: what a height, hash or address names on this node (`kind` none when nothing)."""

    query: str
    kind: str  # block | tx | account | round | none
    height: NotRequired[int]  # the block's height (block, committed tx) or the round number (round)
    hash: NotRequired[str]
    address: NotRequired[str]
    message: str


class Preprocessing(TypedDict):
    input_shape: list[int]
    layout: str
    dtype: str
    range: list[float]
    scaling: str
    accepts: list[str]
    output: str
    class_names: list[str] | None


class WithholdCostView(TypedDict):
    round: int
    slash_bps: int
    amount: int
    jail_rounds: int
    jailed_through_round: int


class OpenCommitmentView(TypedDict):
    round: int
    phase: str
    due: str  # the step this miner still owes the round: shard, predict, vote
    cost_if_left: WithholdCostView  # the withholding penalty for stopping now


class MiningStateView(TypedDict):
    """`/miner/mining`: whether this node mines, and what switching it off still waits for."""

    mining: bool  # commits to new rounds
    miner_running: bool
    address: str | None  # the account key's address (None: the node runs without it)
    registered: bool | None
    open_commitment: OpenCommitmentView | None
    pending: str  # what `on`/`off` still has to do ("" when nothing)
    txs: dict[str, str]  # kind -> hash of the last miner.register / miner.unregister sent


class ModelView(TypedDict):
    round: int
    model_hash: str
    model: str
    input_shape: list[int]
    classes: int
    shapes: list[list[int]]
    params: int
    bytes: int
    height: int
    download: str
    preprocessing: Preprocessing


class PredictView(TypedDict):
    round: int
    model_hash: str
    model: str
    count: int
    labels: list[int]
    classes: list[str] | None  # class names of the labels, when the model's classes have names
    logits: list[list[float]]  # exact canonical logits (multiples of 2**-12)


class BlockedPeersView(TypedDict):
    blocked: list[str]


class UnblockedPeersView(TypedDict):
    unblocked: list[str]
