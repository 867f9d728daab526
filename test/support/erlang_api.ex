defmodule ExESDB.Test.ErlangApi do
  @moduledoc false
  # The conformance suites (StreamsConformance, the transient subscription
  # templates) through the Erlang API: `use ..., api: ExESDB.Test.ErlangApi`
  # makes their Streams, Snapshots, Subscriptions and System calls go to
  # these modules, which call :ex_esdb and change only the form of
  # arguments and results (NewEvent structs to event maps, event maps to
  # %EventRecord{}, selectors to sources). Semantics are :ex_esdb's own:
  # what it answers is what the case sees. The Erlang API stores bytes:
  # data and metadata are written as term_to_binary and read back with
  # binary_to_term (as the Elixir API's term serializer does).
  #
  # As a backend: start_store(context) opens a store in a fresh directory
  # (%{store: handle}); stop_store(context) closes it.

  def start_store(_context) do
    dir = Path.join(System.tmp_dir!(), "ex_esdb_test/erl_#{ExESDB.Test.Unique.id()}")
    File.rm_rf!(dir)
    {:ok, h} = :ex_esdb.open(dir, %{durability: :nosync})

    ExUnit.Callbacks.on_exit(fn ->
      :ex_esdb.close(h)
      File.rm_rf(dir)
    end)

    %{store: h}
  end

  def stop_store(%{store: h}), do: :ok = :ex_esdb.close(h)

  @doc false
  def encode(nil), do: ""
  def encode(term), do: :erlang.term_to_binary(term)

  @doc false
  def decode(""), do: %{}
  def decode(bin), do: :erlang.binary_to_term(bin)

  @doc "An :ex_esdb event map (read or delivered) as an %EventRecord{}."
  def record(e) do
    version = e[:version] || e[:event_number]

    %ExESDB.EventRecord{
      event_id: uuid(e.event_id),
      event_type: e.event_type,
      stream_id: e.stream_id,
      event_number: version,
      stream_version: version,
      position: e.position,
      data: decode(e.data),
      metadata: decode(e.metadata),
      causation_id: uuid(e.causation_id),
      correlation_id: uuid(e.correlation_id),
      created_at: DateTime.from_unix!(created_us(e), :microsecond),
      created_epoch: created_us(e)
    }
  end

  defp created_us(%{created_us: us}), do: us
  defp created_us(%{created_epoch: us}), do: us

  defp uuid(<<_::128>> = raw), do: :ex_esdb.uuid_to_string(raw)
  defp uuid(:undefined), do: nil
  defp uuid(other), do: other
end

defmodule ExESDB.Test.ErlangApi.Streams do
  @moduledoc false
  import ExESDB.Test.ErlangApi, only: [encode: 1, record: 1]

  # past any version or position: where a backward read from :end starts
  @end_ 0xFFFFFFFFFFFFFFFF

  # retry: true is Expected {retry, E} in the Erlang API.
  def append_events(s, id, expected, events, retry: true),
    do: append_events(s, id, {:retry, expected}, events)

  def append_events(s, id, expected, events) do
    maps =
      Enum.map(events, fn
        %ExESDB.NewEvent{} = e ->
          Map.reject(
            %{
              event_type: e.event_type,
              data: encode(e.data),
              metadata: encode(e.metadata),
              event_id: e.event_id,
              causation_id: e.causation_id,
              correlation_id: e.correlation_id
            },
            fn {_k, v} -> v == nil end
          )

        other ->
          other
      end)

    case :ex_esdb.append(s, id, expected, maps) do
      {:ok, %{version: v}} -> {:ok, v}
      error -> error
    end
  end

  def get_events(s, id, from, count, direction \\ :forward),
    do: records(:ex_esdb.read_stream(s, id, start(from), count, direction))

  def get_all_events(s, from, count, direction \\ :forward),
    do: records(:ex_esdb.read_all(s, start(from), count, direction))

  def get_events_by_type(s, type, from, count),
    do: records(:ex_esdb.read_type(s, type, start(from), count))

  # The lazy reads follow the pages' continuations, as the Elixir API's do.
  def stream_forward(s, id, from \\ 1, batch \\ 1000),
    do: lazy(&:ex_esdb.read_stream_page(s, id, &1, batch, :forward), start(from))

  def stream_backward(s, id, from \\ :end, batch \\ 1000),
    do: lazy(&:ex_esdb.read_stream_page(s, id, &1, batch, :backward), start(from))

  def all_forward(s, from \\ 1, batch \\ 1000),
    do: lazy(&:ex_esdb.read_all_page(s, &1, batch, :forward), start(from))

  def all_backward(s, from \\ :end, batch \\ 1000),
    do: lazy(&:ex_esdb.read_all_page(s, &1, batch, :backward), start(from))

  def get_version(s, id), do: :ex_esdb.stream_version(s, id)
  def stream_exists?(s, id), do: :ex_esdb.stream_exists(s, id)
  def get_streams(s), do: :ex_esdb.streams(s)
  def delete_stream(s, id, expected \\ :any), do: :ex_esdb.delete_stream(s, id, expected)

  defp start(:start), do: 0
  defp start(:end), do: @end_
  defp start(n), do: n

  defp records({:ok, events}), do: {:ok, Enum.map(events, &record/1)}
  defp records(error), do: error

  # The first page is read now (its error is the answer), the rest lazily.
  defp lazy(page, from) do
    with {:ok, events, next} <- page.(from) do
      rest =
        Stream.unfold(next, fn
          :eof ->
            nil

          n ->
            {:ok, evs, next} = page.(n)
            {evs, next}
        end)

      {:ok, Stream.concat([events], rest) |> Stream.concat() |> Stream.map(&record/1)}
    end
  end
end

defmodule ExESDB.Test.ErlangApi.Snapshots do
  @moduledoc false
  import ExESDB.Test.ErlangApi, only: [encode: 1, decode: 1]
  alias ExESDB.Schema.SnapshotRecord

  def record_snapshot(s, %SnapshotRecord{} = snap),
    do:
      :ex_esdb.put_snapshot(
        s,
        snap.source_uuid,
        snap.source_version,
        snap.source_type || "",
        encode(snap.data),
        encode(snap.metadata)
      )

  def read_snapshot(s, uuid) do
    with {:ok, snap} <- :ex_esdb.get_snapshot(s, uuid) do
      {:ok,
       %SnapshotRecord{
         source_uuid: snap.source_uuid,
         source_version: snap.source_version,
         source_type: snap.source_type,
         data: decode(snap.data),
         metadata: decode(snap.metadata),
         created_at: DateTime.from_unix!(snap.created_us, :microsecond)
       }}
    end
  end

  def delete_snapshot(s, uuid), do: :ex_esdb.delete_snapshot(s, uuid)
end

defmodule ExESDB.Test.ErlangApi.Subscriptions do
  @moduledoc false
  # Transient subscriptions only: the Erlang API has no persistent ones.
  # Selectors become sources; a delivered {:events, maps} reaches the
  # subscriber as it is (cases read position, stream_id, event_type).

  def subscribe(s, selector, pid \\ self(), opts \\ []),
    do: :ex_esdb.subscribe(s, source(selector), pid, Map.new(opts))

  def grant(s, sub, n), do: :ex_esdb.grant(s, sub, n)
  def unsubscribe(s, sub), do: :ex_esdb.unsubscribe(s, sub)

  defp source({:by_stream, "$all"}), do: :all
  defp source({:by_stream, id}), do: {:stream, id}
  defp source({:by_event_type, type}), do: {:type, type}
  defp source(other), do: other
end

defmodule ExESDB.Test.ErlangApi.System do
  @moduledoc false
  def stats(s), do: :ex_esdb.stats(s)
end

defmodule ExESDB.Test.ErlangApiAttached do
  @moduledoc false
  # The Erlang API attached (:ex_esdb.attach/1) to a store ExESDB.System
  # runs: start_store(context) starts it with `backend` (a single node,
  # ExESDB.Test.NifBackend, or a 3-node cluster, ExESDB.Test.ClusterBackend)
  # and answers %{store: handle, store_id: id}.

  def start_store(context, backend) do
    ctx = backend.start_store(context)
    {:ok, h} = :ex_esdb.attach(ctx.store)
    ctx |> Map.put(:store_id, ctx.store) |> Map.put(:store, h)
  end

  def stop_store(%{store_id: id} = ctx, backend), do: backend.stop_store(%{ctx | store: id})

  def restart_store(%{store_id: id} = ctx, backend), do: backend.restart_store(%{ctx | store: id})
end

defmodule ExESDB.Test.ErlangApiCluster do
  @moduledoc false
  # The Erlang API attached to a cluster store (ExESDB.Test.ClusterBackend).
  alias ExESDB.Test.{ClusterBackend, ErlangApiAttached}
  def start_store(ctx), do: ErlangApiAttached.start_store(ctx, ClusterBackend)
  def stop_store(ctx), do: ErlangApiAttached.stop_store(ctx, ClusterBackend)
  def restart_store(ctx), do: ErlangApiAttached.restart_store(ctx, ClusterBackend)
end

defmodule ExESDB.Test.ErlangApiSingle do
  @moduledoc false
  # The Erlang API attached to a single-node store (ExESDB.Test.NifBackend).
  alias ExESDB.Test.{ErlangApiAttached, NifBackend}
  def start_store(ctx), do: ErlangApiAttached.start_store(ctx, NifBackend)
  def stop_store(ctx), do: ErlangApiAttached.stop_store(ctx, NifBackend)
  def restart_store(ctx), do: ErlangApiAttached.restart_store(ctx, NifBackend)
end

defmodule ExESDB.Test.ErlangApiCNode do
  @moduledoc false
  # The Erlang API attached to a store on the C node backend
  # (ExESDB.Test.CNodeBackend).
  alias ExESDB.Test.{CNodeBackend, ErlangApiAttached}
  def start_store(ctx), do: ErlangApiAttached.start_store(ctx, CNodeBackend)
  def stop_store(ctx), do: ErlangApiAttached.stop_store(ctx, CNodeBackend)
  def restart_store(ctx), do: ErlangApiAttached.restart_store(ctx, CNodeBackend)
end

defmodule ExESDB.Test.ErlangApiCNodeCluster do
  @moduledoc false
  # The Erlang API attached to a store on a cluster of three C node
  # replicas (ExESDB.Test.CNodeCluster): writes go to the leader C node,
  # reads come from the store's own C node, a follower.
  alias ExESDB.Test.{CNodeCluster, ErlangApiAttached}
  def start_store(ctx), do: ErlangApiAttached.start_store(ctx, CNodeCluster)
  def stop_store(ctx), do: ErlangApiAttached.stop_store(ctx, CNodeCluster)
  def restart_store(ctx), do: ErlangApiAttached.restart_store(ctx, CNodeCluster)
end
