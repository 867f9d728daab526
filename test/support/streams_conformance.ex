defmodule ExESDB.StreamsConformance do
  @moduledoc false
  # The stream and snapshot behaviour every backend must show, written
  # once. A backend's test module says:
  #
  #     use ExESDB.StreamsConformance, backend: MyBackend
  #
  # where MyBackend.start_store(context) starts an empty store and returns
  # %{store: store_id}. `api: ExESDB.Test.ErlangApi` runs the same cases
  # through the Erlang API (its Streams and Snapshots modules call
  # :ex_esdb); the check of a %SnapshotRecord{} argument is the Elixir
  # API's own and is skipped there.
  use ExUnit.CaseTemplate

  using opts do
    backend = Keyword.fetch!(opts, :backend)
    api = opts |> Keyword.get(:api, ExESDB) |> Macro.expand(__CALLER__)
    elixir_only = api != ExESDB && "the Elixir API's snapshot struct"

    quote do
      alias ExESDB.{EventRecord, NewEvent}
      alias unquote(Module.concat(api, Streams))
      alias unquote(Module.concat(api, Snapshots))
      alias ExESDB.Schema.SnapshotRecord

      setup context, do: unquote(backend).start_store(context)

      defp new_events(n, type \\ "counted") do
        for i <- 1..n, do: %NewEvent{event_type: type, data: %{n: i}, metadata: %{"m" => i}}
      end

      describe "append_events/4" do
        test "appends and returns the new version", %{store: s} do
          assert {:ok, 3} = Streams.append_events(s, "a", 0, new_events(3))
          assert {:ok, 5} = Streams.append_events(s, "a", 3, new_events(2))
          assert {:ok, 1} = Streams.append_events(s, "b", :any, new_events(1))
          assert {:ok, 5} = Streams.get_version(s, "a")
        end

        test "checks the expected version", %{store: s} do
          assert {:error, :stream_not_found} =
                   Streams.append_events(s, "a", :stream_exists, new_events(1))

          assert {:error, :wrong_expected_version} = Streams.append_events(s, "a", 1, new_events(1))
          assert {:ok, 1} = Streams.append_events(s, "a", :no_stream, new_events(1))
          assert {:error, :stream_exists} = Streams.append_events(s, "a", :no_stream, new_events(1))
          assert {:error, :wrong_expected_version} = Streams.append_events(s, "a", 0, new_events(1))
          assert {:error, :wrong_expected_version} = Streams.append_events(s, "a", 2, new_events(1))
          assert {:ok, 2} = Streams.append_events(s, "a", :stream_exists, new_events(1))
          assert {:ok, 2} = Streams.get_version(s, "a")
        end

        test "a retry with the same event ids returns the original version", %{store: s} do
          events = for e <- new_events(2), do: %{e | event_id: ExESDB.UUID.uuid4()}
          assert {:ok, 2} = Streams.append_events(s, "a", 0, events)
          assert {:ok, 2} = Streams.append_events(s, "a", 0, events)
          assert {:ok, 3} = Streams.append_events(s, "a", 2, new_events(1))
          assert {:ok, 2} = Streams.append_events(s, "a", 0, events)
          assert {:ok, 3} = Streams.get_version(s, "a")
        end

        # issue 12: what a gateway or a caller sends again after an
        # unknown outcome, after other appends to the stream
        test "a retry marked retry: true is found behind the tail", %{store: s} do
          events = for e <- new_events(2), do: %{e | event_id: ExESDB.UUID.uuid4()}
          assert {:ok, 2} = Streams.append_events(s, "m", :any, events)
          assert {:ok, 3} = Streams.append_events(s, "m", :any, new_events(1))
          assert {:ok, 2} = Streams.append_events(s, "m", :any, events, retry: true)
          assert {:ok, 2} = Streams.append_events(s, "m", :stream_exists, events, retry: true)
          assert {:ok, 3} = Streams.get_version(s, "m")
          assert {:ok, 5} = Streams.append_events(s, "m", :any, events)
        end

        test "refuses bad input with clear errors and writes nothing", %{store: s} do
          assert {:error, :no_events} = Streams.append_events(s, "a", :any, [])

          assert {:error, {:invalid_stream_id, ""}} =
                   Streams.append_events(s, "", :any, new_events(1))

          assert {:error, {:invalid_stream_id, "$all"}} =
                   Streams.append_events(s, "$all", :any, new_events(1))

          assert {:error, {:invalid_stream_id, "$ce-a"}} =
                   Streams.append_events(s, "$ce-a", :any, new_events(1))

          assert {:error, {:invalid_stream_id, "$all"}} = Streams.delete_stream(s, "$all")
          assert {:error, {:invalid_stream_id, "$all"}} = Streams.get_version(s, "$all")
          refute Streams.stream_exists?(s, "$all")
          assert {:ok, 0} = Streams.get_version(s, "$ce-a")

          too_long = String.duplicate("s", 1025)

          assert {:error, {:limit_exceeded, :max_stream_id, 1024}} =
                   Streams.append_events(s, too_long, :any, new_events(1))

          big = %NewEvent{event_type: "t", data: :binary.copy("x", 17 * 1024 * 1024)}

          assert {:error, {:limit_exceeded, :max_event_bytes, 16_777_216}} =
                   Streams.append_events(s, "a", :any, [big])

          assert {:ok, 0} = Streams.get_version(s, "a")
          refute Streams.stream_exists?(s, "a")
        end

        test "refuses arguments of the wrong type with clear errors", %{store: s} do
          assert {:error, {:invalid_expected_version, -1}} =
                   Streams.append_events(s, "a", -1, new_events(1))

          assert {:error, {:invalid_event, :nope}} = Streams.append_events(s, "a", :any, [:nope])

          assert {:error, {:invalid_event_id, "x"}} =
                   Streams.append_events(s, "a", :any, [
                     %NewEvent{event_id: "x", event_type: "t", data: 1}
                   ])

          assert {:ok, 0} = Streams.get_version(s, "a")
          assert {:error, {:invalid_count, -1}} = Streams.get_events(s, "a", 1, -1)
          assert {:error, {:invalid_stream_id, 42}} = Streams.get_version(s, 42)
        end

        test "all events of one append are stored, or none", %{store: s} do
          ok = new_events(2)
          bad = [%NewEvent{event_type: "t", data: :binary.copy("x", 17 * 1024 * 1024)}]

          assert {:error, {:limit_exceeded, :max_event_bytes, _}} =
                   Streams.append_events(s, "a", :any, ok ++ bad)

          assert {:ok, []} = Streams.get_all_events(s, 1, 10)
        end
      end

      describe "reads" do
        setup %{store: s} do
          {:ok, 5} = Streams.append_events(s, "a", 0, new_events(5))
          {:ok, 2} = Streams.append_events(s, "b", 0, new_events(2, "other"))
          {:ok, 7} = Streams.append_events(s, "a", 5, new_events(2))
          :ok
        end

        test "get_events forward and backward", %{store: s} do
          assert {:ok, events} = Streams.get_events(s, "a", 1, 100)
          assert Enum.map(events, & &1.event_number) == Enum.to_list(1..7)
          assert Enum.map(events, & &1.position) == [1, 2, 3, 4, 5, 8, 9]
          assert {:ok, back} = Streams.get_events(s, "a", :end, 3, :backward)
          assert Enum.map(back, & &1.event_number) == [7, 6, 5]
          assert {:ok, mid} = Streams.get_events(s, "a", 3, 2)
          assert Enum.map(mid, & &1.event_number) == [3, 4]
          assert {:ok, []} = Streams.get_events(s, "a", 8, 10)
          assert {:error, :stream_not_found} = Streams.get_events(s, "nope", 1, 10)
        end

        test "records carry every field", %{store: s} do
          {:ok, [e | _]} = Streams.get_events(s, "a", 1, 1)
          assert %EventRecord{stream_id: "a", event_type: "counted", event_number: 1} = e
          assert e.stream_version == 1 and e.position == 1
          assert e.data == %{n: 1}
          assert e.metadata == %{"m" => 1}
          assert {:ok, _} = ExESDB.UUID.to_binary(e.event_id)
          assert %DateTime{} = e.created_at
          assert DateTime.to_unix(e.created_at, :microsecond) == e.created_epoch
          assert abs(DateTime.diff(DateTime.utc_now(), e.created_at)) < 60
        end

        test "causation and correlation ids survive", %{store: s} do
          c1 = ExESDB.UUID.uuid4()
          c2 = ExESDB.UUID.uuid4()

          {:ok, 1} =
            Streams.append_events(s, "c", 0, [
              %NewEvent{event_type: "t", data: 1, causation_id: c1, correlation_id: c2}
            ])

          {:ok, [e]} = Streams.get_events(s, "c", 1, 1)
          assert e.causation_id == c1 and e.correlation_id == c2
        end

        test "lazy streams read every batch", %{store: s} do
          assert {:ok, st} = Streams.stream_forward(s, "a", 1, 2)
          assert Enum.map(st, & &1.event_number) == Enum.to_list(1..7)
          assert {:ok, st} = Streams.stream_forward(s, "a", 4, 3)
          assert Enum.map(st, & &1.event_number) == [4, 5, 6, 7]
          assert {:ok, st} = Streams.stream_backward(s, "a", :end, 2)
          assert Enum.map(st, & &1.event_number) == Enum.to_list(7..1)
          assert {:error, :stream_not_found} = Streams.stream_forward(s, "nope")
          assert {:ok, all} = Streams.all_forward(s, 1, 4)
          assert Enum.map(all, & &1.position) == Enum.to_list(1..9)
          assert {:ok, all} = Streams.all_backward(s, :end, 4)
          assert Enum.map(all, & &1.position) == Enum.to_list(9..1)
        end

        test "$all and by type", %{store: s} do
          assert {:ok, all} = Streams.get_all_events(s, 1, 100)
          assert Enum.map(all, & &1.position) == Enum.to_list(1..9)
          assert Enum.map(all, & &1.stream_id) == ~w(a a a a a b b a a)
          assert {:ok, last} = Streams.get_all_events(s, :end, 2, :backward)
          assert Enum.map(last, & &1.position) == [9, 8]
          assert {:ok, others} = Streams.get_events_by_type(s, "other", 1, 100)
          assert Enum.map(others, & &1.position) == [6, 7]
          assert {:ok, [_]} = Streams.get_events_by_type(s, "counted", 9, 100)
          assert {:ok, []} = Streams.get_events_by_type(s, "unknown", 1, 100)
        end

        test "listing, existence and versions", %{store: s} do
          assert {:ok, ["a", "b"]} = Streams.get_streams(s)
          assert Streams.stream_exists?(s, "a")
          refute Streams.stream_exists?(s, "zzz")
          assert {:ok, 0} = Streams.get_version(s, "zzz")
        end

        test "delete_stream tombstones a stream", %{store: s} do
          assert {:error, :wrong_expected_version} = Streams.delete_stream(s, "b", 1)
          assert :ok = Streams.delete_stream(s, "b", 2)
          assert {:error, :stream_deleted} = Streams.get_events(s, "b", 1, 10)
          assert {:error, :stream_deleted} = Streams.append_events(s, "b", :any, new_events(1))
          assert {:error, :stream_deleted} = Streams.delete_stream(s, "b")
          assert {:error, :stream_not_found} = Streams.delete_stream(s, "nope")
          refute Streams.stream_exists?(s, "b")
          assert {:ok, all} = Streams.get_all_events(s, 1, 100)
          assert length(all) == 9
        end
      end

      describe "snapshots" do
        test "record, read, replace, delete", %{store: s} do
          assert {:error, :snapshot_not_found} = Snapshots.read_snapshot(s, "agg-1")

          snap = %SnapshotRecord{
            source_uuid: "agg-1",
            source_version: 3,
            source_type: "Acct",
            data: %{b: 10}
          }

          assert :ok = Snapshots.record_snapshot(s, snap)
          assert {:ok, read} = Snapshots.read_snapshot(s, "agg-1")
          assert %SnapshotRecord{source_version: 3, source_type: "Acct", data: %{b: 10}} = read
          assert %DateTime{} = read.created_at
          assert :ok = Snapshots.record_snapshot(s, %{snap | source_version: 5, data: %{b: 20}})
          assert {:ok, %{source_version: 5, data: %{b: 20}}} = Snapshots.read_snapshot(s, "agg-1")
          assert :ok = Snapshots.delete_snapshot(s, "agg-1")
          assert {:error, :snapshot_not_found} = Snapshots.read_snapshot(s, "agg-1")
          assert :ok = Snapshots.delete_snapshot(s, "agg-1")
        end

        @tag skip: unquote(elixir_only)
        test "refuses bad snapshots", %{store: s} do
          assert {:error, {:invalid_snapshot, _}} =
                   Snapshots.record_snapshot(s, %SnapshotRecord{source_uuid: "", source_version: 1})

          assert {:error, {:invalid_snapshot, _}} =
                   Snapshots.record_snapshot(s, %{not: :a_snapshot})

          assert {:error, {:invalid_source_uuid, nil}} = Snapshots.read_snapshot(s, nil)
        end
      end
    end
  end
end
