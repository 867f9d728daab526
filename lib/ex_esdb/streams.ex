defmodule ExESDB.Streams do
  @moduledoc """
  Streams of events: append with optimistic concurrency, read forward and
  backward (eagerly or as lazy `Stream`s read in batches), read `$all` and
  events by type, list and delete streams.

  `store` is the `store_id` given to `ExESDB.System`. Versions are 1-based:
  a stream's first event is version 1 and an absent or empty stream is at
  version 0. Positions in `$all` are 1-based and gap-free.

  Expected versions: `:any`, `:no_stream` (the stream must not exist),
  `:stream_exists`, or the exact current version (0 for a new stream).

  ## Pages and where the next one starts

  The store reads in pages bounded by count (at most 10,000 events) and by
  bytes (the `max_read_bytes` limit, 16 MiB by default, counting data,
  metadata, stream id and type; a page always holds at least one event,
  however big). A page can therefore be short without being the end.
  `read_page/5` returns one page and its continuation: `:eof` when the
  source held nothing more at the time of the read, or the version (for a
  stream) or global position (for `$all` and a type) to pass as `start`
  for the next page. `get_events/5`, `get_all_events/4` and
  `get_events_by_type/4` follow it until `count` events or `:eof`; the
  lazy `stream_*`/`all_*` streams follow it until `:eof`, holding one
  page at a time; on a store in this VM (or the in-VM cluster) a process
  of the stream's own reads the next page meanwhile (`ExESDB.ReadAhead`:
  one page ahead, ended with the stream or its reader).

  Errors (`{:error, reason}`): `:wrong_expected_version`, `:stream_exists`,
  `:stream_not_found`, `:stream_deleted`, `:no_events`,
  `{:limit_exceeded, key, max}` (the limit and its value, e.g.
  `{:limit_exceeded, :max_event_bytes, 16777216}`; see `ExESDB.Options`),
  `{:undecodable, reason}` (data or metadata that may not be stored or
  read back as a term: see `ExESDB.Serializer.Term`), `:timeout`,
  `:outcome_unknown`, `:overloaded` (below), `:closed`,
  `:store_not_started`, storage errors such as `:disk_full` or
  `:io_error`, and `{:store_failed, cause}` once a failed flush has stopped
  the store's writes (README, "Durability"). A wrong argument answers
  `{:error, {:invalid_<what>, value}}` and never raises:
  `{:invalid_stream_id, id}`, `{:invalid_expected_version, v}`,
  `{:invalid_count, n}`, `{:invalid_start, v}`, `{:invalid_direction, d}`,
  `{:invalid_read_batch_size, n}`, `{:invalid_events, term}`,
  `{:invalid_event, term}`, `{:invalid_event_type, t}`,
  `{:invalid_event_id, id}`, `{:invalid_source, source}` (`read_page/5`).

  ## Decoded data, or the stored bytes

  Reads give each event's `data` and `metadata` decoded by the store's
  serializer. Every read function also takes `opts`; `decode: false`
  leaves them as the bytes the serializer made (`ExESDB.Serializer.Term`:
  `term_to_binary` output; decode one later with its `deserialize/2`,
  which applies the same checks). That skips the decoding's cost for a
  reader that looks only at ids, types and positions, or decodes a few
  events itself. An unknown option answers `{:error, {:invalid_option, o}}`.

  ## Local or linearizable reads

  Every read (and `get_version/3`) takes `consistency: :local` (the
  default) or `consistency: :linearizable` per call, and a `timeout` for
  the latter (default the store's). In cluster mode a local read is this
  node's replica as it is (it has the caller's own acknowledged writes,
  maybe not yet those made elsewhere); a linearizable read first passes
  a barrier through the leader (`ExESDB.Cluster.barrier/2`) within
  `timeout`, then reads locally, and sees every write acknowledged on any
  node before the call, or answers the barrier's error (`:no_quorum`
  during an election or on a minority side, `{:not_leader, node}`,
  `:timeout`) and reads nothing. On a single node a linearizable read is
  the local read. `{:error, {:invalid_option, {:consistency, v}}}` for
  any other value (`ExESDB.ReadConsistency`).

  ## Timeouts and a full queue

  A write waits the store's `timeout` (`ExESDB.Options`) for the writer:

    * `{:error, :timeout}`: the write was still queued and has been
      withdrawn; it is never applied.
    * `{:error, :outcome_unknown}`: the writer had already taken it; it
      may or may not be applied (no late reply reaches the caller).
      Retry with the same events.
    * `{:error, :overloaded}`: the writer queue holds `max_queue_bytes`
      already; nothing was written.

  ## Retries

  The store recognises an append it has already applied by its events'
  ids and answers the original result without writing anything when:

    * the expected version is exact (or `:no_stream`) and the events at
      the versions right after it carry the append's ids, in order;
    * the expected version is `:any` (or `:stream_exists`) and the
      stream's last events carry the append's ids, in order.

  So after `{:error, :outcome_unknown}` (or a crash before the reply),
  append the *same list* again right away. That needs ids given once:
  build events with `ExESDB.NewEvent.new/1` (or set `event_id`
  yourself); events with `event_id: nil` get new ids at every call and
  are written again.

  An `:any` (or `:stream_exists`) retry after other events were appended
  to the stream in between is recognised only when marked: pass
  `retry: true` with the same list. The store then looks for its first
  event among the stream's last 1,024 versions (docs/FORMAT.md,
  "Retries"; only marked appends pay for the look) and answers the
  original result when the append's events sit there in order. Beyond
  that window, or unmarked, they are written again. In cluster mode the
  gateway marks its own retries (after `:outcome_unknown`, `:not_leader`
  or an unreachable leader) and a caller's retry with `retry: true` is
  marked the same way. An exact expected version needs no mark: it
  answers the original result, or `:wrong_expected_version` when the
  first attempt was not applied and the stream moved on.
  """

  alias ExESDB.{EventCodec, EventRecord, NewEvent, ReadAhead, Store}

  @type store :: atom()
  @type stream_id :: String.t()
  @type expected_version :: :any | :no_stream | :stream_exists | non_neg_integer()
  @type direction :: :forward | :backward
  @typedoc """
  `decode: false`: data and metadata as stored bytes (see above);
  `consistency` and `timeout`: see "Local or linearizable reads".
  """
  @type read_opts :: [
          decode: boolean(),
          consistency: :local | :linearizable,
          timeout: timeout()
        ]

  # Events asked of one page.
  @page 1000
  # The most a page holds (the store caps a read at this).
  @max_page 10_000
  # Versions and positions are u64; the three largest are the expected
  # versions :any, :no_stream and :stream_exists.
  @max_u64 0xFFFFFFFFFFFFFFFF
  @max_expected @max_u64 - 3
  # the longest a receive can wait
  @max_timeout 0xFFFFFFFF

  @doc """
  Append events atomically; returns the stream's new version.

  Options: `timeout` (ms, or `:infinity`; default the store's `timeout`);
  `retry: true` when this is the same list sent again after an unknown
  outcome (see "Retries"). Retrying an append whose events (by `event_id`) are already stored at
  the versions it targets returns the original result and writes nothing
  (see "Retries").
  """
  @spec append_events(store(), stream_id(), expected_version(), [NewEvent.t()], keyword()) ::
          {:ok, pos_integer()} | {:error, term()}
  def append_events(store, stream_id, expected_version, events, opts \\ []) do
    with {:ok, s} <- Store.fetch(store),
         :ok <- check_writable(stream_id),
         :ok <- check_expected(expected_version),
         {:ok, s} <- append_options(s, opts),
         :ok <- check_event_count(events, s.limits),
         {:ok, tuples} <- EventCodec.encode(events, s.serializer) do
      expected = if opts[:retry], do: {:retry, expected_version}, else: expected_version

      case s.backend.submit(s, {:append, stream_id, expected, tuples}, []) do
        {:ok, version, _position} -> {:ok, version}
        {:error, _} = error -> error
      end
    end
  end

  defp append_options(s, opts) when is_list(opts) do
    Enum.reduce_while(opts, {:ok, s}, fn
      {:timeout, t}, {:ok, s} when t in 0..@max_timeout//1 or t == :infinity ->
        {:cont, {:ok, %{s | timeout: t}}}

      {:timeout, t}, _ ->
        {:halt, {:error, {:invalid_timeout, t}}}

      {:retry, r}, acc when is_boolean(r) ->
        {:cont, acc}

      other, _ ->
        {:halt, {:error, {:invalid_option, other}}}
    end)
  end

  defp append_options(_s, opts), do: {:error, {:invalid_options, opts}}

  @doc """
  Read up to `count` events of a stream from `start_version` (inclusive).
  Backward, `start_version` may be `:end`.
  """
  @spec get_events(
          store(),
          stream_id(),
          non_neg_integer() | :end,
          non_neg_integer(),
          direction(),
          read_opts()
        ) ::
          {:ok, [EventRecord.t()]} | {:error, term()}
  def get_events(store, stream_id, start_version, count, direction \\ :forward, opts \\ []) do
    with {:ok, s} <- Store.fetch(store),
         :ok <- check_stream_id(stream_id),
         :ok <- check_count(count),
         :ok <- check_direction(direction),
         {:ok, from} <- start(start_version, direction),
         {:ok, decode} <- read_options(s, opts) do
      read_pages(s, count, from, direction, source(stream_id), decode)
    end
  end

  @doc """
  A lazy `Stream` of a stream's events from `start_version`, read
  `read_batch_size` at a time, but at most 512 per read of a store in
  this VM (a larger batch gives the same events, read in more pieces:
  512 records keep the reader's garbage collection on its own
  scheduler), the next piece read ahead while the reader uses one.
  `{:error, :stream_not_found}` when the stream does not exist.
  """
  @spec stream_forward(store(), stream_id(), non_neg_integer(), pos_integer(), read_opts()) ::
          {:ok, Enumerable.t()} | {:error, term()}
  def stream_forward(store, stream_id, start_version \\ 1, read_batch_size \\ @page, opts \\ []),
    do: lazy_stream(store, stream_id, start_version, read_batch_size, :forward, opts)

  @doc "As `stream_forward/4`, newest first, from `start_version` (default `:end`)."
  @spec stream_backward(
          store(),
          stream_id(),
          non_neg_integer() | :end,
          pos_integer(),
          read_opts()
        ) ::
          {:ok, Enumerable.t()} | {:error, term()}
  def stream_backward(
        store,
        stream_id,
        start_version \\ :end,
        read_batch_size \\ @page,
        opts \\ []
      ),
      do: lazy_stream(store, stream_id, start_version, read_batch_size, :backward, opts)

  @doc """
  One page of events of `source` (a stream id, `"$all"` or
  `{:type, event_type}`) from `start` (a version for a stream, a global
  position otherwise; backward, `:end` is the newest) and where the next
  page starts: `:eof`, or the `start` of the next page. The page holds at
  most `count` events (and at most 10,000) and `max_read_bytes`; it may
  be short, or even hold fewer than asked, without being the end. Events
  of a type are read forward only.

      {:ok, events, next} = ExESDB.Streams.read_page(:store, "orders-1", 1, 100)
  """
  @spec read_page(
          store(),
          stream_id() | {:type, String.t()},
          non_neg_integer() | :end,
          non_neg_integer(),
          direction(),
          read_opts()
        ) ::
          {:ok, [EventRecord.t()], :eof | pos_integer()} | {:error, term()}
  def read_page(store, source, start, count, direction \\ :forward, opts \\ []) do
    with {:ok, s} <- Store.fetch(store),
         {:ok, source} <- check_source(source, direction),
         :ok <- check_count(count),
         :ok <- check_direction(direction),
         {:ok, from} <- start(start, direction),
         {:ok, decode} <- read_options(s, opts) do
      page(s, source, from, count, direction, decode)
    end
  end

  @doc "Read up to `count` events of `$all` from `start_position`."
  @spec get_all_events(
          store(),
          non_neg_integer() | :end,
          non_neg_integer(),
          direction(),
          read_opts()
        ) ::
          {:ok, [EventRecord.t()]} | {:error, term()}
  def get_all_events(store, start_position, count, direction \\ :forward, opts \\ []) do
    with {:ok, s} <- Store.fetch(store),
         :ok <- check_count(count),
         :ok <- check_direction(direction),
         {:ok, from} <- start(start_position, direction),
         {:ok, decode} <- read_options(s, opts) do
      read_pages(s, count, from, direction, :all, decode)
    end
  end

  @doc "A lazy `Stream` of `$all` from `start_position`."
  @spec all_forward(store(), non_neg_integer(), pos_integer(), read_opts()) ::
          {:ok, Enumerable.t()} | {:error, term()}
  def all_forward(store, start_position \\ 1, read_batch_size \\ @page, opts \\ []),
    do: lazy_stream(store, "$all", start_position, read_batch_size, :forward, opts)

  @doc "A lazy `Stream` of `$all`, newest first."
  @spec all_backward(store(), non_neg_integer() | :end, pos_integer(), read_opts()) ::
          {:ok, Enumerable.t()} | {:error, term()}
  def all_backward(store, start_position \\ :end, read_batch_size \\ @page, opts \\ []),
    do: lazy_stream(store, "$all", start_position, read_batch_size, :backward, opts)

  @doc "Events of one type, in `$all` order, from `start_position`."
  @spec get_events_by_type(
          store(),
          String.t(),
          non_neg_integer(),
          non_neg_integer(),
          read_opts()
        ) ::
          {:ok, [EventRecord.t()]} | {:error, term()}
  def get_events_by_type(store, event_type, start_position, count, opts \\ []) do
    with {:ok, s} <- Store.fetch(store),
         :ok <- check_event_type(event_type),
         :ok <- check_count(count),
         {:ok, from} <- start(start_position, :forward),
         {:ok, decode} <- read_options(s, opts) do
      read_pages(s, count, from, :forward, {:type, event_type}, decode)
    end
  end

  @doc """
  The current version of a stream: 0 when it has no events (it does not
  exist), `{:error, :stream_deleted}` once it was deleted. Options:
  `consistency` and `timeout` (see "Local or linearizable reads").
  """
  @spec get_version(store(), stream_id(), keyword()) ::
          {:ok, non_neg_integer()} | {:error, term()}
  def get_version(store, stream_id, opts \\ []) do
    with {:ok, s} <- Store.fetch(store),
         :ok <- check_stream_id(stream_id),
         {:ok, o} <- ExESDB.ReadConsistency.options(opts, []),
         :ok <- ExESDB.ReadConsistency.before_read(s, o),
         {:ok, version, _exists, false} <- s.backend.stream_info(s, stream_id) do
      {:ok, version}
    else
      {:ok, _version, _exists, true} -> {:error, :stream_deleted}
      error -> error
    end
  end

  @doc "Whether a stream exists (deleted streams do not)."
  @spec stream_exists?(store(), stream_id()) :: boolean()
  def stream_exists?(store, stream_id) do
    with {:ok, s} <- Store.fetch(store),
         :ok <- check_stream_id(stream_id),
         {:ok, _version, exists, deleted} <- s.backend.stream_info(s, stream_id) do
      exists and not deleted
    else
      _ -> false
    end
  end

  @doc """
  The ids of every stream that exists (deleted ones are not listed), in
  byte order, except
  that ids longer than 500 bytes sharing their first 500 bytes come in a
  stable but unspecified order among themselves.
  """
  @spec get_streams(store()) :: {:ok, [stream_id()]} | {:error, term()}
  def get_streams(store) do
    with {:ok, s} <- Store.fetch(store), do: list_all(s, nil, [])
  end

  @doc """
  Delete (tombstone) a stream: later reads and appends answer
  `{:error, :stream_deleted}`; its events stay in `$all`.
  """
  @spec delete_stream(store(), stream_id(), expected_version()) :: :ok | {:error, term()}
  def delete_stream(store, stream_id, expected_version \\ :any) do
    with {:ok, s} <- Store.fetch(store),
         :ok <- check_writable(stream_id),
         :ok <- check_expected(expected_version) do
      s.backend.submit(s, {:delete_stream, stream_id, expected_version}, [])
    end
  end

  # ---- internals ----------------------------------------------------

  # Refuse an append over max_append_events before serializing its events.
  defp check_event_count(events, %{max_append_events: max}) when is_list(events) do
    if length(events) > max,
      do: {:error, {:limit_exceeded, :max_append_events, max}},
      else: :ok
  end

  defp check_event_count(_events, _limits), do: :ok

  defp list_all(s, after_id, acc) do
    case s.backend.list_streams(s, after_id, @page) do
      {:ok, []} ->
        {:ok, acc |> Enum.reverse() |> List.flatten()}

      {:ok, page} ->
        live = for {id, _version, false} <- page, do: id
        list_all(s, elem(List.last(page), 0), [live | acc])

      {:error, _} = error ->
        error
    end
  end

  # Read `count` events from `source`, page after page until `count` or
  # the end.
  defp read_pages(s, count, from, direction, source, decode, acc \\ [])

  defp read_pages(_s, count, from, direction, _source, _decode, [])
       when count == 0 or (direction == :backward and from == 0),
       do: {:ok, []}

  defp read_pages(s, count, from, direction, source, decode, acc) do
    case page(s, source, from, min(count, @page), direction, decode) do
      {:ok, records, next} ->
        acc = [records | acc]
        left = count - length(records)

        if next == :eof or left <= 0,
          do: {:ok, acc |> Enum.reverse() |> Enum.concat()},
          else: read_pages(s, left, next, direction, source, decode, acc)

      {:error, _} = error ->
        error
    end
  end

  defp source("$all"), do: :all
  defp source(stream_id), do: {:stream, stream_id}

  # One page of records and where the next starts. The backend builds the
  # structs; with the default serializer it decodes data and metadata too.
  defp page(s, source, from, n, direction, decode) do
    case s.backend.read(s, source, from, min(n, @max_page), direction, decode: decode) do
      {:ok, records, next} -> {:ok, EventCodec.finish(records, s, decode), next}
      {:error, _} = error -> error
    end
  end

  defp lazy_stream(store, stream_id, start, batch, direction, opts) do
    with {:ok, s} <- Store.fetch(store),
         :ok <- check_stream_id(stream_id),
         :ok <- check_batch(batch),
         {:ok, from} <- start(start, direction),
         {:ok, decode} <- read_options(s, opts),
         batch = lazy_read(s, batch),
         {:ok, first, next} <- page(s, source(stream_id), from, batch, direction, decode) do
      {:ok, build_stream(s, source(stream_id), {first, next}, batch, direction, decode)}
    end
  end

  # Events a lazy stream asks of one read, whatever its read_batch_size:
  # the backend's piece (ExESDB.Backend.NIF.read_piece/0 says why 512).
  defp lazy_read(s, batch) do
    case s.backend.read_piece() do
      :infinity -> batch
      piece -> min(batch, piece)
    end
  end

  # The first page was read eagerly so a missing stream is an error up
  # front; the rest is read as the stream is consumed, each page from
  # where the one before said the next starts, until :eof. Where the
  # backend reads in two halves (read_page/page_records), the next page
  # is read ahead by a process of its own while this one builds and uses
  # the current page (ExESDB.ReadAhead: one page ahead, stopped with the
  # stream). Otherwise a page is read once the one before has been
  # consumed, so one page at a time is alive (reading ahead in this
  # process kept two: twice the copying in each garbage collection).
  defp build_stream(s, source, {records, next}, batch, direction, decode) do
    Stream.resource(
      fn -> {records, next, read_ahead(s, source, next, batch, direction, decode)} end,
      fn
        {:done, _} = done ->
          {:halt, done}

        {records, :eof, ahead} ->
          {records, {:done, ahead}}

        {records, next, ahead} when records != [] ->
          {records, {[], next, ahead}}

        {[], next, ahead} ->
          case next_page(s, source, next, batch, direction, decode, ahead) do
            {{:ok, more, :eof}, ahead} -> {more, {:done, ahead}}
            {{:ok, more, after_more}, ahead} -> {more, {[], after_more, ahead}}
            {{:error, reason}, _} -> raise "ExESDB read failed: #{inspect(reason)}"
          end
      end,
      fn
        {_, _, %ReadAhead{} = ahead} -> ReadAhead.stop(ahead)
        {:done, %ReadAhead{} = ahead} -> ReadAhead.stop(ahead)
        _ -> :ok
      end
    )
  end

  # Pieces smaller than this are read by the reader itself: each page
  # read ahead costs a round of messages and two context switches, which
  # a small page's work does not repay (reads of 1 event took twice as
  # long read ahead, docs/PERFORMANCE.md).
  @read_ahead_min 256

  defp read_ahead(_s, _source, :eof, _batch, _direction, _decode), do: nil

  defp read_ahead(s, source, next, batch, direction, decode) do
    if batch >= @read_ahead_min and s.backend.read_ahead(),
      do: ReadAhead.start(s, source, next, min(batch, @max_page), direction, decode)
  end

  # The next page, and the read-ahead for the ones after (nil: none).
  defp next_page(s, source, next, batch, direction, decode, nil),
    do: {page(s, source, next, batch, direction, decode), nil}

  defp next_page(s, source, next, batch, direction, decode, ahead) do
    case ReadAhead.next(ahead, s) do
      {:ok, records, next} -> {{:ok, EventCodec.finish(records, s, decode), next}, ahead}
      {:error, _} = error -> {error, ahead}
      # its process died without the page: read here, from the same place
      :down -> next_page(s, source, next, batch, direction, decode, nil)
    end
  end

  # The read options checked, then (a linearizable read) the barrier:
  # {:ok, decode}.
  defp read_options(s, opts) do
    with {:ok, o} <- ExESDB.ReadConsistency.options(opts, [:decode]),
         :ok <- ExESDB.ReadConsistency.before_read(s, o),
         do: {:ok, Map.get(o, :decode, true)}
  end

  defp start(:end, :backward), do: {:ok, 0xFFFFFFFFFFFFFFFF}
  defp start(n, _) when n in 0..@max_u64//1, do: {:ok, n}
  defp start(other, _), do: {:error, {:invalid_start, other}}

  defp check_writable("$all"), do: {:error, {:invalid_stream_id, "$all"}}
  defp check_writable(id), do: check_stream_id(id)

  defp check_stream_id(id) when is_binary(id) and id != "", do: :ok
  defp check_stream_id(id), do: {:error, {:invalid_stream_id, id}}

  defp check_event_type(t) when is_binary(t) and t != "", do: :ok
  defp check_event_type(t), do: {:error, {:invalid_event_type, t}}

  defp check_expected(v) when v in [:any, :no_stream, :stream_exists], do: :ok
  defp check_expected(v) when v in 0..@max_expected//1, do: :ok
  defp check_expected(v), do: {:error, {:invalid_expected_version, v}}

  defp check_source("$all", _), do: {:ok, :all}
  defp check_source({:type, t}, :forward) when is_binary(t) and t != "", do: {:ok, {:type, t}}
  defp check_source(id, _) when is_binary(id) and id != "", do: {:ok, {:stream, id}}
  defp check_source(other, _), do: {:error, {:invalid_source, other}}

  defp check_count(n) when is_integer(n) and n >= 0, do: :ok
  defp check_count(n), do: {:error, {:invalid_count, n}}

  defp check_batch(n) when is_integer(n) and n > 0, do: :ok
  defp check_batch(n), do: {:error, {:invalid_read_batch_size, n}}

  defp check_direction(d) when d in [:forward, :backward], do: :ok
  defp check_direction(d), do: {:error, {:invalid_direction, d}}
end
