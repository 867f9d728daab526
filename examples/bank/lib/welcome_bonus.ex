defmodule Bank.WelcomeBonus do
  @moduledoc "A process manager: every new account gets a bonus deposit of 10."
  use Commanded.ProcessManagers.ProcessManager,
    application: Bank.App,
    name: "welcome_bonus"

  @derive Jason.Encoder
  defstruct [:account_number]

  alias Bank.{AccountOpened, DepositMoney, MoneyDeposited}

  def interested?(%AccountOpened{account_number: n}), do: {:start, n}
  def interested?(%MoneyDeposited{account_number: n, amount: 10}), do: {:stop, n}
  def interested?(_event), do: false

  def handle(%__MODULE__{}, %AccountOpened{account_number: n}),
    do: %DepositMoney{account_number: n, amount: 10}

  def apply(%__MODULE__{} = pm, %AccountOpened{account_number: n}), do: %{pm | account_number: n}
end
