defmodule ExESDB.ApiConformance do
  @moduledoc false
  # What a word means must not depend on the API that says it: the same
  # cases run through the Elixir API (ExESDB.*) and the Erlang API
  # (:ex_esdb), each through a driver that gives its results one shape:
  #
  #     use ExESDB.ApiConformance, driver: ExESDB.Test.Api.Erlang
  #
  # A driver: start(context) -> store; append(store, id, expected, datas)
  # -> {:ok, version}; version/2; exists?/2; delete/3; read/5 ->
  # {:ok, [{version, data}]}; read_all/4 -> {:ok, [{position, stream_id}]};
  # streams/1; put_snapshot(store, uuid, version, data); get_snapshot/2 ->
  # {:ok, {version, data}}; delete_snapshot/2; default_timeout/0. Errors
  # pass through as the API answers them.
  use ExUnit.CaseTemplate

  using opts do
    driver = Keyword.fetch!(opts, :driver)

    quote do
      @api unquote(driver)

      setup context, do: %{s: @api.start(context)}

      test "appends, versions and expected versions", %{s: s} do
        assert {:ok, 2} = @api.append(s, "a", :no_stream, ["1", "2"])
        assert {:ok, 2} = @api.version(s, "a")
        assert {:ok, 0} = @api.version(s, "never")
        assert {:error, :wrong_expected_version} = @api.append(s, "a", 1, ["x"])
        assert {:error, :stream_exists} = @api.append(s, "a", :no_stream, ["x"])
        assert {:error, :stream_not_found} = @api.append(s, "b", :stream_exists, ["x"])
        assert {:ok, 3} = @api.append(s, "a", :any, ["3"])
        assert @api.exists?(s, "a")
        refute @api.exists?(s, "never")
      end

      test "reads forward and backward, by stream and $all", %{s: s} do
        {:ok, 3} = @api.append(s, "a", :any, ["1", "2", "3"])
        {:ok, 1} = @api.append(s, "b", :any, ["4"])
        assert {:ok, [{2, "2"}, {3, "3"}]} = @api.read(s, "a", 2, 10, :forward)
        assert {:ok, [{3, "3"}, {2, "2"}]} = @api.read(s, "a", 3, 2, :backward)
        assert {:ok, [{1, "a"}, {2, "a"}, {3, "a"}, {4, "b"}]} = @api.read_all(s, 0, 10, :forward)
        assert {:error, :stream_not_found} = @api.read(s, "never", 1, 10, :forward)
      end

      test "a deleted stream: no version, does not exist, not listed", %{s: s} do
        {:ok, 2} = @api.append(s, "gone", :any, ["1", "2"])
        {:ok, 1} = @api.append(s, "kept", :any, ["1"])
        assert :ok = @api.delete(s, "gone", :any)
        assert {:error, :stream_deleted} = @api.version(s, "gone")
        refute @api.exists?(s, "gone")
        assert {:error, :stream_deleted} = @api.read(s, "gone", 1, 10, :forward)
        assert {:error, :stream_deleted} = @api.append(s, "gone", :any, ["3"])
        assert {:ok, ["kept"]} = @api.streams(s)
        # its events stay in $all
        assert {:ok, [{1, "gone"}, {2, "gone"}, {3, "kept"}]} = @api.read_all(s, 0, 10, :forward)
      end

      test "snapshots: the latest wins, absent is snapshot_not_found, delete is idempotent",
           %{s: s} do
        assert {:error, :snapshot_not_found} = @api.get_snapshot(s, "src")
        assert :ok = @api.put_snapshot(s, "src", 1, "one")
        assert :ok = @api.put_snapshot(s, "src", 2, "two")
        assert {:ok, {2, "two"}} = @api.get_snapshot(s, "src")
        assert :ok = @api.delete_snapshot(s, "src")
        assert {:error, :snapshot_not_found} = @api.get_snapshot(s, "src")
        assert :ok = @api.delete_snapshot(s, "src")
      end

      test "reserved ids and limits name what is wrong", %{s: s} do
        assert {:error, {:invalid_stream_id, "$all"}} = @api.append(s, "$all", :any, ["x"])

        assert {:error, {:limit_exceeded, :max_event_bytes, 16_777_216}} =
                 @api.append(s, "big", :any, [:binary.copy("x", 16_777_217)])
      end

      test "a write waits 10 s for its acknowledgement by default" do
        assert @api.default_timeout() == 10_000
      end
    end
  end
end
