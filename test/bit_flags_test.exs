defmodule BitFlagsTest do
  use ExUnit.Case, async: true
  import Bitwise
  doctest BitFlags

  @descriptions %{
    0 => "None",
    1 => "Ready",
    2 => "In Progress",
    4 => "Completed",
    8 => "Cancelled",
    16 => "Failed",
    32 => "Archived",
    64 => "Ready to Archive",
    128 => "Ready to Publish",
    256 => "Published",
    512 => "Unpublished"
  }

  test "set/unset" do
    assert BitFlags.set(36, 64) == 100
    assert BitFlags.set(100, 64) == 100
    assert BitFlags.unset(100, 64) == 36
    assert BitFlags.unset(36, 64) == 36
  end

  test "set_all/unset_all" do
    assert BitFlags.set_all(36, [64, 128]) == 228
    assert BitFlags.unset_all(228, [64, 128]) == 36
    assert BitFlags.set_all(36, []) == 36
    assert BitFlags.unset_all(36, []) == 36
  end

  test "has?/has_not?" do
    assert BitFlags.has?(100, 64)
    refute BitFlags.has?(100, 8)
    refute BitFlags.has_not?(100, 64)
    assert BitFlags.has_not?(100, 8)
  end

  test "has?(x, 0) is always true" do
    assert BitFlags.has?(0, 0)
    assert BitFlags.has?(100, 0)
    refute BitFlags.has_not?(100, 0)
  end

  test "has_all?/has_any?" do
    assert BitFlags.has_all?(100, [64, 32])
    refute BitFlags.has_all?(100, [64, 8])
    assert BitFlags.has_any?(100, [64, 128])
    refute BitFlags.has_any?(100, [8, 128])
    assert BitFlags.has_all?(100, [])
    refute BitFlags.has_any?(100, [])
  end

  test "to_list/highest/lowest/to_string" do
    assert BitFlags.to_list(100, @descriptions) == ["Completed", "Archived", "Ready to Archive"]
    assert BitFlags.highest(100, @descriptions) == "Ready to Archive"
    assert BitFlags.lowest(100, @descriptions) == "Completed"
    assert BitFlags.to_string(100, @descriptions) == "Completed, Archived, Ready to Archive"
  end

  test "zero maps to the 0 description" do
    assert BitFlags.to_list(0, @descriptions) == ["None"]
    assert BitFlags.to_string(0, @descriptions) == "None"
    assert BitFlags.lowest(0, @descriptions) == "None"
  end

  test "bits without a description are ignored" do
    assert BitFlags.to_list(1024 + 4, @descriptions) == ["Completed"]
    assert BitFlags.to_list(1024, @descriptions) == []
  end

  test "lowest/highest raise when no described bits are set" do
    assert_raise MatchError, fn -> BitFlags.lowest(1024, @descriptions) end
    assert_raise MatchError, fn -> BitFlags.highest(1024, @descriptions) end
  end

  test "decompose" do
    assert BitFlags.decompose(100) == [4, 32, 64]
    assert BitFlags.decompose(1) == [1]
    assert BitFlags.decompose(255) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert BitFlags.decompose(1 <<< 70) == [1 <<< 70]
  end

  test "decompose rejects non-positive values" do
    assert_raise FunctionClauseError, fn -> BitFlags.decompose(0) end
    assert_raise FunctionClauseError, fn -> BitFlags.decompose(-4) end
  end

  test "non-integers raise FunctionClauseError" do
    assert_raise FunctionClauseError, fn -> BitFlags.set("a", 1) end
    assert_raise FunctionClauseError, fn -> BitFlags.unset(1, "a") end
    assert_raise FunctionClauseError, fn -> BitFlags.has?(1.0, 1) end
    assert_raise FunctionClauseError, fn -> BitFlags.set_all("a", [1]) end
    assert_raise FunctionClauseError, fn -> BitFlags.to_list("a", @descriptions) end
    assert_raise FunctionClauseError, fn -> BitFlags.decompose(1.0) end
  end
end
