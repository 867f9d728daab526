defmodule ExESDB.Backend.NIF do
  @moduledoc """
  `ExESDB.Backend` in this VM: the store is opened by the NIF
  (`priv/ex_esdb_nif.so`), mutations queue to the core's writer thread and
  are answered as `{reference, reply}` messages, reads run on dirty
  schedulers. The only module of the Elixir shell that calls the NIF.
  """
  @behaviour ExESDB.Backend

  alias ExESDB.Backend.{Await, Errors}
  alias ExESDB.EventCodec

  @impl true
  def open(path, opts), do: :ex_esdb_nif.open(path, opts)

  @impl true
  def close(handle), do: :ex_esdb_nif.close(handle)

  @impl true
  def limits(handle), do: :ex_esdb_nif.limits(handle)

  @impl true
  def submit(store, command, opts \\ [])

  def submit(%{handle: h} = store, command, opts) do
    op = elem(command, 0)

    if opts[:async] do
      Errors.translate(op, queue(h, Keyword.fetch!(opts, :ref), command))
    else
      reply = Await.call(&queue(h, &1, command), store.timeout, &:ex_esdb_nif.cancel(h, &1))
      Errors.translate(op, reply)
    end
  end

  defp queue(h, ref, {:append, stream_id, expected, events}),
    do: :ex_esdb_nif.append(h, ref, stream_id, expected, events)

  defp queue(h, ref, {:delete_stream, stream_id, expected}),
    do: :ex_esdb_nif.delete_stream(h, ref, stream_id, expected)

  defp queue(h, ref, {:snapshot_put, uuid, version, type, data, meta}),
    do: :ex_esdb_nif.snapshot_put(h, ref, uuid, version, type, data, meta)

  defp queue(h, ref, {:snapshot_delete, uuid}), do: :ex_esdb_nif.snapshot_delete(h, ref, uuid)

  defp queue(h, ref, {:checkpoint_put, name, checkpoint, definition}),
    do: :ex_esdb_nif.checkpoint_put(h, ref, name, checkpoint, definition)

  defp queue(h, ref, {:checkpoint_delete, name}), do: :ex_esdb_nif.checkpoint_delete(h, ref, name)

  @impl true
  def read(store, source, from, count, direction),
    do:
      :ex_esdb_nif.read_records(
        store.handle,
        source,
        from,
        count,
        direction,
        EventCodec.format(store)
      )

  @impl true
  def stream_info(store, stream_id), do: :ex_esdb_nif.stream_info(store.handle, stream_id)

  @impl true
  def list_streams(store, after_id, count),
    do: :ex_esdb_nif.list_streams(store.handle, after_id, count)

  @impl true
  def snapshot_get(store, uuid),
    do: Errors.translate(:snapshot_get, :ex_esdb_nif.snapshot_get(store.handle, uuid))

  @impl true
  def checkpoint_get(store, name),
    do: Errors.translate(:checkpoint_get, :ex_esdb_nif.checkpoint_get(store.handle, name))

  @impl true
  def checkpoint_list(store, after_name, count),
    do: :ex_esdb_nif.checkpoint_list(store.handle, after_name, count)

  @impl true
  def subscribe(store, pid, source, opts) do
    format = EventCodec.format(store)

    shape =
      case Keyword.get(opts, :shape, :plain) do
        :plain -> false
        :tagged -> true
        :ranged -> :ranged
      end

    case Keyword.get(opts, :credit, :infinity) do
      :infinity when shape == false -> :ex_esdb_nif.subscribe(store.handle, pid, source, format)
      :infinity -> :ex_esdb_nif.subscribe(store.handle, pid, source, format, shape)
      credit -> :ex_esdb_nif.subscribe(store.handle, pid, source, format, shape, credit)
    end
  end

  @impl true
  def grant(store, member, n),
    do: Errors.translate(:grant, :ex_esdb_nif.grant(store.handle, member, n))

  @impl true
  def unsubscribe(store, member),
    do: Errors.translate(:unsubscribe, :ex_esdb_nif.unsubscribe(store.handle, member))

  @impl true
  def stats(store), do: :ex_esdb_nif.stats(store.handle)

  # verify and backup run on threads of their own and answer {Ref, Reply}
  # when done, however long that takes: the caller waits without bound.
  @impl true
  def verify(store), do: unbounded(store, &:ex_esdb_nif.verify(store.handle, &1))

  @impl true
  def backup(store, dest), do: unbounded(store, &:ex_esdb_nif.backup(store.handle, &1, dest))

  defp unbounded(store, start),
    do: Await.call(start, :infinity, &:ex_esdb_nif.cancel(store.handle, &1))

  @impl true
  def decode_term(bin), do: :ex_esdb_nif.decode_term(bin)
end
