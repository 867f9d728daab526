defmodule ExESDB.Subscriptions.DeleteRaceTest do
  # delete_subscription racing a subscribe_to of the same name: once the
  # delete has returned, no subscription of that name runs with (or
  # stores) the deleted checkpoint; one created after the delete starts
  # from its own start_from. Rounds scale by ESDB_SUB_DELETE_RACE_ROUNDS.
  use ExUnit.Case, async: true

  import ExESDB.Test.SubscriptionHelpers

  alias ExESDB.Subscriptions

  setup context, do: ExESDB.Test.NifBackend.start_store(context)

  @rounds String.to_integer(System.get_env("ESDB_SUB_DELETE_RACE_ROUNDS", "100"))
  @selector {:by_stream, "$all"}
  @opts [concurrency_limit: 2]

  test "after delete_subscription returns, the old checkpoint is gone from every survivor",
       %{store: s} do
    append(s, "a", 3)
    other = spawn(fn -> Process.sleep(:infinity) end)

    for round <- 1..@rounds do
      name = "race"
      # a subscription with checkpoint 3, running (even rounds) or stopped
      {:ok, sub} = Subscriptions.subscribe_to(s, name, @selector, self(), @opts)
      assert positions(ack_until(s, sub, 3, [])) == [1, 2, 3]
      wait_until(fn -> GenServer.call(sub, :checkpoint) == 3 end)
      if rem(round, 2) == 1, do: :ok = Subscriptions.unsubscribe(s, sub)

      joiner = Task.async(fn -> Subscriptions.subscribe_to(s, name, @selector, other, @opts) end)
      assert Subscriptions.delete_subscription(s, name) in [:ok, {:error, :subscription_not_found}]

      # a subscription running now was created after the delete, from the
      # origin: its checkpoint is 0, and so is the stored one
      case Registry.lookup(Subscriptions.registry(s), name) do
        [{pid, _}] ->
          checkpoint =
            try do
              GenServer.call(pid, :checkpoint)
            catch
              :exit, _ -> :gone
            end

          assert checkpoint in [0, :gone], "round #{round}: a survivor at #{checkpoint}"

        [] ->
          :ok
      end

      {:ok, listed} = Subscriptions.get_subscriptions(s)
      assert Enum.all?(listed, &(&1.checkpoint == 0)), "round #{round}: #{inspect(listed)}"

      assert {:ok, _} = Task.await(joiner)
      # the next round starts from no subscription
      Subscriptions.delete_subscription(s, name)
      wait_until(fn -> Registry.lookup(Subscriptions.registry(s), name) == [] end)
      receive_all()
    end
  end
end
