defmodule Bank.Router do
  @moduledoc "Routes the bank's commands to account aggregates."
  use Commanded.Commands.Router

  alias Bank.{DepositMoney, OpenAccount, WithdrawMoney}

  dispatch([OpenAccount, DepositMoney, WithdrawMoney],
    to: Bank.Account,
    identity: :account_number
  )
end
