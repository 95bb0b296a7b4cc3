// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IERC20Minimal {
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// @title Commune bridge vault
/// @notice Holds the DCC tokens that back ledger balances. A deposit locks tokens here and
///         names the ledger account to credit; the bank watches `Deposited` and credits the
///         ledger once the event is final. A withdrawal is sent by the bank's operator key after
///         it has reserved the amount on the ledger; each withdrawalId pays out at most once, so
///         a resent or duplicated transaction can never pay twice.
contract BridgeVault {
    IERC20Minimal public immutable token;
    address public owner;
    address public operator;
    /// @notice Number of deposits so far; the next deposit's id.
    uint256 public depositCount;
    /// @notice True for every withdrawalId already paid.
    mapping(bytes32 => bool) public withdrawn;

    event Deposited(address indexed from, address indexed ledgerAccount, uint256 amount, uint256 indexed depositId);
    event Withdrawn(address indexed to, uint256 amount, bytes32 indexed withdrawalId);
    event OperatorChanged(address indexed previousOperator, address indexed newOperator);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    error NotOwner(address caller);
    error NotOperator(address caller);
    error ZeroAddress();
    error ZeroAmount();
    error AlreadyWithdrawn(bytes32 withdrawalId);
    error TokenTransferFailed();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    constructor(address token_, address operator_) {
        if (token_ == address(0) || operator_ == address(0)) revert ZeroAddress();
        token = IERC20Minimal(token_);
        owner = msg.sender;
        operator = operator_;
        emit OwnershipTransferred(address(0), msg.sender);
        emit OperatorChanged(address(0), operator_);
    }

    /// @notice Locks `amount` tokens of the caller (approved to this vault beforehand) for the
    ///         ledger account `ledgerAccount`.
    function deposit(uint256 amount, address ledgerAccount) external returns (uint256 depositId) {
        if (amount == 0) revert ZeroAmount();
        if (ledgerAccount == address(0)) revert ZeroAddress();
        depositId = depositCount++;
        if (!token.transferFrom(msg.sender, address(this), amount)) revert TokenTransferFailed();
        emit Deposited(msg.sender, ledgerAccount, amount, depositId);
    }

    /// @notice Pays `amount` tokens to `to` for the bank's withdrawal `withdrawalId`, once.
    function withdraw(address to, uint256 amount, bytes32 withdrawalId) external {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        if (to == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        if (withdrawn[withdrawalId]) revert AlreadyWithdrawn(withdrawalId);
        withdrawn[withdrawalId] = true;
        if (!token.transfer(to, amount)) revert TokenTransferFailed();
        emit Withdrawn(to, amount, withdrawalId);
    }

    function setOperator(address newOperator) external onlyOwner {
        if (newOperator == address(0)) revert ZeroAddress();
        emit OperatorChanged(operator, newOperator);
        operator = newOperator;
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }
}
