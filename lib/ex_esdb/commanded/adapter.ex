defmodule ExESDB.Commanded.Adapter do
  @moduledoc """
  ExESDB as a Commanded event store:

      config :my_app, MyApp.Application,
        event_store: [
          adapter: ExESDB.Commanded.Adapter,
          data_dir: "/var/lib/my_app/events",
          serializer: Commanded.Serialization.JsonSerializer
        ]

  Every other key is an `ExESDB.Options` key (`durability`, `timeout`, ...).
  Each Commanded application (and each `name:`/`prefix:`) gets its own
  store, `data_dir/<store_id>`, isolated from the others.

  The module compiles without Commanded. ex_esdb names Commanded as an
  optional dependency, so in an application that has both, Mix compiles
  Commanded first (whatever the order of the deps) and the adapter
  declares the `Commanded.EventStore.Adapter` behaviour, with Elixir's
  callback checks.

  **Append → delivery latency.** Commanded's InMemory store delivers an
  event to subscribers before `append_to_stream` returns; here delivery is
  asynchronous: the store hands committed events to each subscription at
  commit, in parallel with the append's reply, and the subscription turns
  them into `RecordedEvent`s (decoding with the `serializer`) before it
  sends them. Measured through this adapter (`append_to_stream/4` to a
  `subscribe_to/6` subscriber, `bench/commanded_bench.exs`, lines
  `commanded_latency_*`, docs/PERFORMANCE.md; 2 shared vCPUs and a disk
  shared with other test runs), from the append's return to the arrival:

    * Erlang terms (no serializer), or `JsonSerializer` with protocols
      consolidated (a `prod` build or release): p50 0–1 µs (usually
      delivered before the return), p99 3–55 µs; a decode costs 1.5 µs.
    * `JsonSerializer` in a test build (`consolidate_protocols: false`):
      p50 1.8–2.7 ms, p99 21–39 ms. The decode dominates it: Commanded's
      `JsonDecoder` protocol, unconsolidated, looks its implementation up
      through the code server for the data and again for the metadata
      (0.8–1.4 ms each; `Jason.decode!` itself takes 0.6 µs).

  Code that reads back through a subscription what it just appended must
  wait for the event rather than assume it has arrived.

  **Subscription names.** A persistent subscription stores its selector
  with its checkpoint: an event handler whose `subscribe_to` changes
  (`:all` to a stream, or one stream to another) while its `name` stays
  gets `{:error, :subscription_definition_changed}`, which Commanded
  logs and retries with backoff. Delete the old subscription first
  (`delete_subscription/3`) or give the handler a new name.
  """

  if Code.ensure_loaded?(Commanded.EventStore.Adapter) do
    @behaviour Commanded.EventStore.Adapter
  end

  alias ExESDB.{Snapshots, Streams, Subscriptions}
  alias ExESDB.Commanded.Mapper

  @adapter_keys [:adapter, :serializer, :name, :prefix, :application]

  @doc "Children to start and the adapter's meta for every other call."
  @spec child_spec(module(), keyword()) :: {:ok, [Supervisor.child_spec()], map()}
  def child_spec(application, config) do
    name = Keyword.get(config, :name, application)
    prefix = Keyword.get(config, :prefix)
    store_id = store_id(name, prefix)

    store_opts =
      config
      |> Keyword.drop(@adapter_keys)
      |> Keyword.put(:store_id, store_id)

    meta = %{
      application: application,
      store: store_id,
      serializer: Keyword.get(config, :serializer)
    }

    {:ok, [ExESDB.System.child_spec(store_opts)], meta}
  end

  defp store_id(name, nil), do: :"commanded_#{inspect(name)}" |> sanitize()
  defp store_id(name, prefix), do: :"commanded_#{inspect(name)}_#{prefix}" |> sanitize()

  # Store ids name a directory: keep them to safe characters.
  defp sanitize(atom),
    do: atom |> Atom.to_string() |> String.replace(~r/[^A-Za-z0-9_.-]/, "_") |> String.to_atom()

  @doc "Append events; `expected_version`: `:any_version`, `:no_stream`, `:stream_exists` or a version."
  @spec append_to_stream(map(), String.t(), term(), [map()], keyword()) :: :ok | {:error, term()}
  def append_to_stream(meta, stream_uuid, expected_version, events, opts \\ [])

  def append_to_stream(_meta, _stream_uuid, _expected_version, [], _opts), do: :ok

  def append_to_stream(meta, stream_uuid, expected_version, events, _opts) do
    new_events = Enum.map(events, &Mapper.to_new_event(&1, meta.serializer))

    case Streams.append_events(meta.store, stream_uuid, expected(expected_version), new_events) do
      {:ok, _version} -> :ok
      {:error, _} = error -> error
    end
  end

  defp expected(:any_version), do: :any
  defp expected(other), do: other

  @doc "A stream's events from `start_version`, read lazily in batches."
  @spec stream_forward(map(), String.t(), non_neg_integer(), pos_integer()) ::
          Enumerable.t() | {:error, term()}
  def stream_forward(meta, stream_uuid, start_version \\ 0, read_batch_size \\ 1_000) do
    case Streams.stream_forward(meta.store, stream_uuid, start_version, read_batch_size) do
      {:ok, stream} -> Stream.map(stream, &Mapper.to_recorded_event(&1, meta.serializer, :stream))
      {:error, _} = error -> error
    end
  end

  @doc "Transient subscription of the caller to `:all` or a stream."
  @spec subscribe(map(), String.t() | :all) :: :ok | {:error, term()}
  def subscribe(meta, stream) do
    # Commanded's transient subscribers do not grant credit (its own
    # stores have no flow control either)
    opts = [transform: transform(meta, stream), credit: :infinity]

    case Subscriptions.subscribe(meta.store, selector(stream), self(), opts) do
      {:ok, _} -> :ok
      {:error, _} = error -> error
    end
  end

  @doc "Persistent subscription; see `ExESDB.Subscriptions.subscribe_to/5`."
  @spec subscribe_to(map(), String.t() | :all, String.t(), pid(), term(), keyword()) ::
          {:ok, pid()} | {:error, term()}
  def subscribe_to(meta, stream, subscription_name, subscriber, start_from, opts \\ []) do
    opts =
      opts
      |> Keyword.take([:concurrency_limit, :partition_by, :buffer_size])
      # One event in flight per subscriber unless asked otherwise, as
      # Commanded's handlers ack event by event: a message then never
      # holds events of two appends.
      |> Keyword.put_new(:buffer_size, 1)
      |> Keyword.merge(
        start_from: start_from,
        transform: transform(meta, stream),
        # Commanded acks a RecordedEvent: its cursor is the global
        # event_number for :all, the stream_version for a stream
        ack_key: if(stream == :all, do: :event_number, else: :stream_version),
        # cluster mode: a handler stops on its subscription's DOWN when
        # leadership moves and its restart subscribes on the new leader
        follow_leader: false
      )
      |> partition_by_recorded(meta, stream)

    Subscriptions.subscribe_to(meta.store, subscription_name, selector(stream), subscriber, opts)
  end

  # Commanded's partition_by takes a RecordedEvent.
  defp partition_by_recorded(opts, meta, stream) do
    case opts[:partition_by] do
      nil ->
        opts

      f ->
        numbering = numbering(stream)

        Keyword.put(opts, :partition_by, fn record ->
          f.(Mapper.to_recorded_event(record, meta.serializer, numbering))
        end)
    end
  end

  @doc "Acknowledge `event` and the ones before it."
  @spec ack_event(map(), pid(), map()) :: :ok
  def ack_event(meta, subscription, event) when is_pid(subscription),
    do: Subscriptions.ack_event(meta.store, subscription, event)

  @doc "Stop a persistent subscription (its checkpoint stays)."
  @spec unsubscribe(map(), pid()) :: :ok
  def unsubscribe(meta, subscription), do: Subscriptions.unsubscribe(meta.store, subscription)

  @doc "Delete a persistent subscription and its checkpoint."
  @spec delete_subscription(map(), String.t() | :all, String.t()) :: :ok | {:error, term()}
  def delete_subscription(meta, _stream, subscription_name),
    do: Subscriptions.delete_subscription(meta.store, subscription_name)

  @doc "The snapshot of `source_uuid`."
  @spec read_snapshot(map(), String.t()) :: {:ok, struct()} | {:error, :snapshot_not_found}
  def read_snapshot(meta, source_uuid) do
    with {:ok, record} <- Snapshots.read_snapshot(meta.store, source_uuid),
         do: {:ok, Mapper.to_snapshot_data(record, meta.serializer)}
  end

  @doc "Record a snapshot (replacing the source's previous one)."
  @spec record_snapshot(map(), map()) :: :ok | {:error, term()}
  def record_snapshot(meta, snapshot),
    do: Snapshots.record_snapshot(meta.store, Mapper.to_snapshot_record(snapshot, meta.serializer))

  @doc "Delete the snapshot of `source_uuid`."
  @spec delete_snapshot(map(), String.t()) :: :ok | {:error, term()}
  def delete_snapshot(meta, source_uuid), do: Snapshots.delete_snapshot(meta.store, source_uuid)

  defp selector(:all), do: {:by_stream, "$all"}
  defp selector(stream) when is_binary(stream), do: {:by_stream, stream}

  defp numbering(:all), do: :all
  defp numbering(_stream), do: :stream

  defp transform(meta, stream) do
    numbering = numbering(stream)
    fn events -> Enum.map(events, &Mapper.to_recorded_event(&1, meta.serializer, numbering)) end
  end
end
