defmodule ExESDB.AggregatorTest do
  use ExUnit.Case, async: true
  doctest ExESDB.Aggregator

  alias ExESDB.Aggregator

  describe "foldl/2" do
    test "empty list yields empty state" do
      assert Aggregator.foldl([]) == %{}
      assert Aggregator.foldl([], %{a: 1}) == %{a: 1}
    end

    test "sums tagged values" do
      assert Aggregator.foldl([%{counter: {:sum, 5}}, %{counter: {:sum, 10}}]) ==
               %{counter: {:sum, 15}}
    end

    test "overwrite stores the unwrapped value" do
      assert Aggregator.foldl([%{name: "John"}, %{name: {:overwrite, "Jane"}}]) ==
               %{name: "Jane"}
    end

    test "mixed events" do
      events = [
        %{name: "John", counter: 5},
        %{counter: {:sum, 10}, status: "active"},
        %{name: {:overwrite, "Jane"}}
      ]

      assert Aggregator.foldl(events) == %{name: "Jane", counter: {:sum, 15}, status: "active"}
    end

    test "uses the initial state" do
      assert Aggregator.foldl([%{counter: {:sum, 10}}], %{name: "John", counter: 5}) ==
               %{name: "John", counter: {:sum, 15}}
    end

    test "a non-numeric current value counts as 0" do
      assert Aggregator.foldl([%{c: "x"}, %{c: {:sum, 2}}]) == %{c: {:sum, 2}}
      assert Aggregator.foldl([%{c: nil}, %{c: {:sum, 2}}]) == %{c: {:sum, 2}}
      assert Aggregator.foldl([%{c: {:sum, 2}}]) == %{c: {:sum, 2}}
    end

    test "floats" do
      assert Aggregator.foldl([%{c: 1.5}, %{c: {:sum, 1}}]) == %{c: {:sum, 2.5}}
      assert Aggregator.foldl([%{c: {:sum, 1.5}}, %{c: {:sum, 1}}]) == %{c: {:sum, 2.5}}
    end

    test "{:sum, non_number} is stored as-is" do
      assert Aggregator.foldl([%{c: 3}, %{c: {:sum, "x"}}]) == %{c: {:sum, "x"}}
    end

    test "plain values replace, including a previous sum" do
      assert Aggregator.foldl([%{c: {:sum, 3}}, %{c: 7}]) == %{c: 7}
    end

    test "only top-level keys, no recursion" do
      events = [%{m: %{a: {:sum, 1}}}, %{m: %{b: {:sum, 2}}}]
      assert Aggregator.foldl(events) == %{m: %{b: {:sum, 2}}}
    end
  end

  describe "finalize_map/1" do
    test "unwraps sum and overwrite tags" do
      assert Aggregator.finalize_map(%{
               name: "John",
               counter: {:sum, 15},
               status: {:overwrite, "active"}
             }) == %{name: "John", counter: 15, status: "active"}
    end

    test "leaves other values unchanged, top level only" do
      assert Aggregator.finalize_map(%{a: {:other, 1}, b: %{c: {:sum, 1}}}) ==
               %{a: {:other, 1}, b: %{c: {:sum, 1}}}

      assert Aggregator.finalize_map(%{}) == %{}
    end
  end
end
