# The example Commanded application on ExESDB; runs only when Commanded is
# compiled in (COMMANDED_PATH, `make test-commanded`).
if Code.ensure_loaded?(Commanded.EventStore.Adapter) do
  defmodule ExESDB.Commanded.BankTest do
    # The example Commanded application (examples/bank) on ExESDB: commands
    # through the router, an event handler and a process manager, then a
    # restart after which the account rebuilds its state from the store.
    use ExUnit.Case, async: false

    alias Bank.{DepositMoney, OpenAccount, WithdrawMoney}

    setup do
      dir = Path.join(System.tmp_dir!(), "ex_esdb_bank_#{ExESDB.Test.Unique.id()}")
      on_exit(fn -> File.rm_rf(dir) end)

      config = [
        event_store: [adapter: ExESDB.Commanded.Adapter, data_dir: dir, durability: :nosync]
      ]

      %{config: config}
    end

    defp start_app(config) do
      {:ok, app} = Bank.App.start_link(config)
      {:ok, handler} = Bank.BalanceProjection.start_link()
      {:ok, pm} = Bank.WelcomeBonus.start_link()
      [app, handler, pm]
    end

    defp stop_app(pids) do
      for pid <- Enum.reverse(pids) do
        ref = Process.monitor(pid)
        Process.unlink(pid)
        Process.exit(pid, :shutdown)
        assert_receive {:DOWN, ^ref, _, _, _}, 5_000
      end
    end

    defp eventually(fun, tries \\ 50) do
      if fun.() or tries == 0,
        do: assert(fun.()),
        else:
          (
            Process.sleep(50)
            eventually(fun, tries - 1)
          )
    end

    test "accounts, handler, process manager, restart", %{config: config} do
      pids = start_app(config)
      :ok = Bank.App.dispatch(%OpenAccount{account_number: "acc-1", initial_balance: 100})
      # the welcome bonus (process manager) deposits 10
      eventually(fn -> Bank.BalanceProjection.balance("acc-1") == 110 end)
      :ok = Bank.App.dispatch(%DepositMoney{account_number: "acc-1", amount: 40})
      :ok = Bank.App.dispatch(%WithdrawMoney{account_number: "acc-1", amount: 50})

      assert {:error, :insufficient_funds} =
               Bank.App.dispatch(%WithdrawMoney{account_number: "acc-1", amount: 1_000})

      eventually(fn -> Bank.BalanceProjection.balance("acc-1") == 100 end)
      stop_app(pids)

      pids = start_app(config)
      # the aggregate rebuilds from its events: 100 + 10 + 40 - 50 + 5
      :ok = Bank.App.dispatch(%DepositMoney{account_number: "acc-1", amount: 5})

      assert %Bank.Account{balance: 105} =
               Commanded.Aggregates.Aggregate.aggregate_state(Bank.App, Bank.Account, "acc-1")

      eventually(fn -> Bank.BalanceProjection.balance("acc-1") == 105 end)
      stop_app(pids)
    end
  end
end
