defmodule ExESDB.Backend.NIF do
  @moduledoc """
  `ExESDB.Backend` in this VM: the store is opened by the NIF
  (`priv/ex_esdb_nif.so`), mutations queue to the core's writer thread and
  are answered as `{reference, reply}` messages, reads run on dirty
  schedulers. It sits on `:ex_esdb_backend`, the one module that calls
  the NIF, which the Erlang API (`:ex_esdb`) sits on too: both APIs share
  its `{Ref, Reply}` wait and its naming of core errors.
  """
  @behaviour ExESDB.Backend

  alias ExESDB.{EventCodec, EventRecord}

  @impl true
  def open(path, opts), do: :ex_esdb_backend.open(path, opts)

  @impl true
  def close(handle), do: :ex_esdb_backend.close(handle)

  @impl true
  def limits(handle), do: :ex_esdb_backend.limits(handle)

  @impl true
  def submit(store, command, opts \\ [])

  def submit(%{handle: h} = store, command, opts) do
    if opts[:async],
      do: :ex_esdb_backend.submit_async(h, command, Keyword.fetch!(opts, :ref)),
      else: :ex_esdb_backend.submit(h, command, store.timeout)
  end

  @impl true
  # The NIF answers a tuple per event and the records are built here:
  # built by compiled code they share one keys tuple, a literal, which no
  # send or garbage collection copies (EventRecord.from_tuples/1).
  def read(store, source, from, count, direction, opts \\ []) do
    {module, decode} = EventCodec.format(store, Keyword.get(opts, :decode, true))

    case :ex_esdb_backend.read_records(
           store.handle,
           source,
           from,
           count,
           direction,
           {module, decode, :tuples}
         ) do
      {:ok, tuples, next} -> {:ok, EventRecord.from_tuples(tuples), next}
      {:error, _} = error -> error
    end
  end

  @impl true
  # read/6's two halves: the events copied out on a dirty IO scheduler (no
  # terms), then their records built on the caller's scheduler.
  def read_page(store, source, from, count, direction, opts \\ []) do
    {module, decode} = EventCodec.format(store, Keyword.get(opts, :decode, true))

    case :ex_esdb_backend.read_page(store.handle, source, from, count, direction) do
      {:ok, page, next} -> {:ok, {page, {module, decode, :tuples}}, next}
      {:error, _} = error -> error
    end
  end

  @impl true
  def page_records(_store, {page, format}) do
    case :ex_esdb_backend.page_records(page, format) do
      {:ok, tuples} -> {:ok, EventRecord.from_tuples(tuples)}
      {:error, _} = error -> error
    end
  end

  @impl true
  # the core's read and the building of records on two cores at once
  def read_ahead, do: true

  @impl true
  def stream_info(store, stream_id), do: :ex_esdb_backend.stream_info(store.handle, stream_id)

  @impl true
  def list_streams(store, after_id, count),
    do: :ex_esdb_backend.list_streams(store.handle, after_id, count)

  @impl true
  def snapshot_get(store, uuid), do: :ex_esdb_backend.snapshot_get(store.handle, uuid)

  @impl true
  def checkpoint_get(store, name), do: :ex_esdb_backend.checkpoint_get(store.handle, name)

  @impl true
  def checkpoint_list(store, after_name, count),
    do: :ex_esdb_backend.checkpoint_list(store.handle, after_name, count)

  @impl true
  def subscribe(store, pid, source, opts) do
    shape =
      case Keyword.get(opts, :shape, :plain) do
        :plain -> false
        :tagged -> true
        :ranged -> :ranged
      end

    credit = Keyword.get(opts, :credit, :infinity)
    format = Keyword.get_lazy(opts, :format, fn -> EventCodec.format(store) end)
    :ex_esdb_backend.subscribe(store.handle, pid, source, format, shape, credit)
  end

  @impl true
  def grant(store, member, n), do: :ex_esdb_backend.grant(store.handle, member, n)

  @impl true
  def unsubscribe(store, member), do: :ex_esdb_backend.unsubscribe(store.handle, member)

  @impl true
  def stats(store), do: :ex_esdb_backend.stats(store.handle)

  @impl true
  def verify(store), do: :ex_esdb_backend.verify(store.handle)

  @impl true
  def backup(store, dest), do: :ex_esdb_backend.backup(store.handle, dest)

  @impl true
  def decode_term(bin), do: :ex_esdb_backend.decode_term(bin)

  @impl true
  # A read's records land in the reader's heap at once: with 1,000 of
  # them (~37,000 words live, ~144,000 with the heap they arrive in) the
  # next garbage collection is over the VM's 131,072-word limit for a
  # collection on the process's own scheduler and runs on a dirty CPU
  # scheduler instead (two more thread hand-offs a page, the copy made
  # there). 512 keep it on the process's scheduler (docs/PERFORMANCE.md,
  # 2026-12-02).
  def read_piece, do: 512

  @impl true
  def placement(_store), do: :local

  @impl true
  def barrier(_store), do: {:error, :not_cluster}
end
