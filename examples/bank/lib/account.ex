defmodule Bank.Account do
  @moduledoc "The account aggregate: its balance, rebuilt from its events."
  defstruct [:account_number, balance: 0]

  alias Bank.{AccountOpened, DepositMoney, MoneyDeposited, MoneyWithdrawn, OpenAccount, WithdrawMoney}

  def execute(%__MODULE__{account_number: nil}, %OpenAccount{} = c),
    do: %AccountOpened{account_number: c.account_number, initial_balance: c.initial_balance}

  def execute(%__MODULE__{}, %OpenAccount{}), do: {:error, :account_exists}
  def execute(%__MODULE__{account_number: nil}, _command), do: {:error, :no_such_account}

  def execute(%__MODULE__{} = a, %DepositMoney{amount: amount}) when amount > 0,
    do: %MoneyDeposited{account_number: a.account_number, amount: amount, balance: a.balance + amount}

  def execute(%__MODULE__{} = a, %WithdrawMoney{amount: amount}) when amount > 0 do
    if amount > a.balance,
      do: {:error, :insufficient_funds},
      else: %MoneyWithdrawn{account_number: a.account_number, amount: amount, balance: a.balance - amount}
  end

  def apply(%__MODULE__{} = a, %AccountOpened{} = e),
    do: %{a | account_number: e.account_number, balance: e.initial_balance}

  def apply(%__MODULE__{} = a, %MoneyDeposited{balance: b}), do: %{a | balance: b}
  def apply(%__MODULE__{} = a, %MoneyWithdrawn{balance: b}), do: %{a | balance: b}
end
