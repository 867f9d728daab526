defmodule Bank.BalanceProjection do
  @moduledoc "An event handler keeping each account's balance in an ETS table."
  use Commanded.Event.Handler,
    application: Bank.App,
    name: "balance_projection",
    start_from: :origin

  alias Bank.{AccountOpened, MoneyDeposited, MoneyWithdrawn}

  @table :bank_balances

  def balance(account) do
    case :ets.lookup(@table, account) do
      [{^account, balance}] -> balance
      [] -> nil
    end
  end

  # runs in the handler once it has subscribed (init/0 is deprecated)
  @impl true
  def after_start(_state) do
    if :ets.whereis(@table) == :undefined,
      do: :ets.new(@table, [:named_table, :public, read_concurrency: true])

    :ok
  end

  @impl true
  def handle(%AccountOpened{account_number: n, initial_balance: b}, _meta), do: put(n, b)
  def handle(%MoneyDeposited{account_number: n, balance: b}, _meta), do: put(n, b)
  def handle(%MoneyWithdrawn{account_number: n, balance: b}, _meta), do: put(n, b)

  defp put(account, balance) do
    :ets.insert(@table, {account, balance})
    :ok
  end
end
