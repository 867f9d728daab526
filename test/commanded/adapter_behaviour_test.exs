# Issue 10 item 7 where Commanded is compiled in (COMMANDED_PATH, `make
# test-commanded`): the adapter declares Commanded's behaviour, so Elixir
# checks its callbacks. (test/consumers/mix_consumer.sh checks both orders
# of the deps in an application.)
if Code.ensure_loaded?(Commanded.EventStore.Adapter) do
  defmodule ExESDB.Commanded.AdapterBehaviourTest do
    use ExUnit.Case, async: true

    alias ExESDB.Commanded.Adapter

    test "the adapter declares Commanded.EventStore.Adapter and implements every callback" do
      behaviours = Keyword.get_values(Adapter.module_info(:attributes), :behaviour)
      assert Commanded.EventStore.Adapter in List.flatten(behaviours)

      optional = Commanded.EventStore.Adapter.behaviour_info(:optional_callbacks)

      missing =
        for {name, arity} = callback <- Commanded.EventStore.Adapter.behaviour_info(:callbacks),
            callback not in optional,
            not function_exported?(Adapter, name, arity),
            do: callback

      assert missing == []
    end
  end
end
