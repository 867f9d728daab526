defmodule ExESDB.Test.Api.Erlang do
  @moduledoc false
  # ExESDB.ApiConformance's driver for the Erlang API (:ex_esdb).

  # The store is the conformance suites' own (ExESDB.Test.ErlangApi).
  def start(context), do: ExESDB.Test.ErlangApi.start_store(context).store

  def append(s, id, expected, datas) do
    case :ex_esdb.append(s, id, expected, Enum.map(datas, &%{event_type: "t", data: &1})) do
      {:ok, %{version: v}} -> {:ok, v}
      error -> error
    end
  end

  def version(s, id), do: :ex_esdb.stream_version(s, id)
  def exists?(s, id), do: :ex_esdb.stream_exists(s, id)
  def delete(s, id, expected), do: :ex_esdb.delete_stream(s, id, expected)

  def read(s, id, from, count, dir) do
    with {:ok, events} <- :ex_esdb.read_stream(s, id, from, count, dir),
         do: {:ok, Enum.map(events, &{&1.version, &1.data})}
  end

  def read_all(s, from, count, dir) do
    with {:ok, events} <- :ex_esdb.read_all(s, from, count, dir),
         do: {:ok, Enum.map(events, &{&1.position, &1.stream_id})}
  end

  def streams(s), do: :ex_esdb.streams(s)

  def put_snapshot(s, uuid, version, data),
    do: :ex_esdb.put_snapshot(s, uuid, version, "T", data, "")

  def get_snapshot(s, uuid) do
    with {:ok, snap} <- :ex_esdb.get_snapshot(s, uuid),
         do: {:ok, {snap.source_version, snap.data}}
  end

  def delete_snapshot(s, uuid), do: :ex_esdb.delete_snapshot(s, uuid)
  def default_timeout, do: :ex_esdb.default_timeout()
end
