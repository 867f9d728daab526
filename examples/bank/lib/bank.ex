defmodule Bank do
  @moduledoc "Commands and events of the example bank."

  defmodule OpenAccount, do: defstruct([:account_number, :initial_balance])
  defmodule DepositMoney, do: defstruct([:account_number, :amount])
  defmodule WithdrawMoney, do: defstruct([:account_number, :amount])

  defmodule AccountOpened do
    @derive Jason.Encoder
    defstruct [:account_number, :initial_balance]
  end

  defmodule MoneyDeposited do
    @derive Jason.Encoder
    defstruct [:account_number, :amount, :balance]
  end

  defmodule MoneyWithdrawn do
    @derive Jason.Encoder
    defstruct [:account_number, :amount, :balance]
  end
end
