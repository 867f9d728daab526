defmodule ExESDB.Backend do
  @moduledoc """
  The one door to native code. Streams, snapshots, subscriptions, the
  system's maintenance calls, the Commanded adapter and the demo reach the
  store through a module implementing this behaviour, named by the running
  store (`%ExESDB.Store{backend: module}`); nothing else calls native code.
  `ExESDB.Backend.NIF` is the in-VM implementation; `ExESDB.Backend.CNode`
  reaches a store served by a C node (`priv/ex_esdb_cnode`, another OS
  process) over Erlang distribution, with the same replies.

  Every mutation is a `t:command/0` given to `c:submit/3`, so routing a
  command to another node (a raft leader) is one place.

  Callbacks answer with the shapes of README's error table: besides the
  errors listed per callback, any of them may answer `{:error, :closed}`
  (the store was closed), `{:error, {:store_failed, cause}}` (writes,
  after a failed flush), `{:error, {:corrupt, where}}`, or a storage error
  such as `:disk_full` or `:io_error`. "Not found" is always the
  ecosystem's atom for what was looked up (`:snapshot_not_found`,
  `:subscription_not_found`): `:ex_esdb_backend.translate/2` is where
  core answers become them, for the Erlang API too. A wrong argument type raises `ArgumentError`
  (the callers check arguments first).
  """

  @typedoc "What an implementation keeps for an open store (a NIF resource, ...)."
  @type handle :: term()
  @type store :: ExESDB.Store.t()
  @type reason :: term()
  @type source :: :all | {:stream, String.t()} | {:type, String.t()}
  @type direction :: :forward | :backward
  @type expected_version :: :any | :no_stream | :stream_exists | non_neg_integer()

  @typedoc """
  A mutation. Events are the encoded tuples of `ExESDB.EventCodec.encode/2`;
  payloads are `{:term, binary}` or bytes.

    * `{:append, stream_id, expected_version, events}` answers
      `{:ok, version, position}`; errors `:wrong_expected_version`,
      `:stream_exists`, `:stream_not_found`, `:stream_deleted`,
      `:no_events`, `{:limit_exceeded, key, max}`, `{:undecodable, reason}`,
      `{:invalid_<what>, value}`, `:overloaded`.
    * `{:delete_stream, stream_id, expected_version}` answers `:ok`; errors
      as an append's.
    * `{:snapshot_put, source_uuid, version, type, data, metadata}` answers
      `:ok`; errors `{:limit_exceeded, key, max}`, `{:undecodable, reason}`.
    * `{:snapshot_delete, source_uuid}` answers `:ok` or
      `{:error, :snapshot_not_found}`.
    * `{:checkpoint_put, name, checkpoint, definition}` answers `:ok`;
      errors `{:limit_exceeded, :max_key, max}`.
    * `{:checkpoint_delete, name}` answers `:ok` or
      `{:error, :subscription_not_found}`.
  """
  @type command ::
          {:append, String.t(), expected_version(), [tuple()]}
          | {:delete_stream, String.t(), expected_version()}
          | {:snapshot_put, String.t(), non_neg_integer(), String.t(), term(), term()}
          | {:snapshot_delete, String.t()}
          | {:checkpoint_put, String.t(), non_neg_integer(), binary()}
          | {:checkpoint_delete, String.t()}

  @doc """
  Open (creating when `create: true`) the store at `path`. Options (a map):
  `durability`, `map_size`, `file_mode`, `create`, `owner` (named to a
  process the store is refused to because it is locked) and the limits
  (`max_event_bytes`, ...; see `ExESDB.Options`). Errors: `:locked` or
  `{:locked, owner}`, `{:invalid_<option>, value}`, `{:corrupt, where}`,
  `:format_too_new`, system errors (`:enoent`, `:eacces`, ...).
  """
  @callback open(path :: binary(), opts :: map()) :: {:ok, handle()} | {:error, reason()}

  @doc "Close a store; idempotent. Queued commands are answered `{:error, :closed}`."
  @callback close(handle()) :: :ok

  @doc "The limits the store checks commands against (the stored ones), as a map."
  @callback limits(handle()) :: {:ok, map()} | {:error, reason()}

  @doc """
  Apply a mutation. Options: `async: true` returns as soon as the command
  is queued (`:ok`, or the error that refused it) and the reply comes
  later to the caller as `{reference, reply}`, with the reference given as
  `ref:` (required then). Otherwise it waits `store.timeout` for the reply:
  then `{:error, :timeout}` when the command was withdrawn from the queue
  (never applied), `{:error, :outcome_unknown}` when it had been taken
  (it may be applied; no late reply reaches the mailbox).
  """
  @callback submit(store(), command(), opts :: keyword()) :: term()

  @doc """
  One page of `source` from `from` (a version for a stream, a position
  otherwise), at most `count` events, as records in the store's format
  (`ExESDB.EventCodec.format/2`), and where the next page starts: `:eof`
  or its `from`. Options: `decode: false` leaves data and metadata as the
  stored bytes (default `true`). Errors: `:stream_not_found`,
  `:stream_deleted`, `{:undecodable, reason}`, `{:corrupt, where}`.
  """
  @callback read(
              store(),
              source(),
              from :: non_neg_integer(),
              count :: non_neg_integer(),
              direction(),
              opts :: [decode: boolean()]
            ) :: {:ok, [map()], :eof | pos_integer()} | {:error, reason()}

  @doc """
  `c:read/6` in two halves, the first: one page of `source` read as an
  opaque page (no records made yet) and where the next starts. Options
  and errors as `c:read/6`'s.
  """
  @callback read_page(
              store(),
              source(),
              from :: non_neg_integer(),
              count :: non_neg_integer(),
              direction(),
              opts :: [decode: boolean()]
            ) :: {:ok, page :: term(), :eof | pos_integer()} | {:error, reason()}

  @doc """
  `c:read/6` in two halves, the second: the records of a page
  `c:read_page/6` read, in its order. Errors: `{:undecodable, reason}`,
  `{:corrupt, where}`.
  """
  @callback page_records(store(), page :: term()) :: {:ok, [map()]} | {:error, reason()}

  @doc """
  Whether a lazy read (`ExESDB.Streams.stream_forward/4`, ...) reads its
  next page ahead in a process of its own (`c:read_page/6` there,
  `c:page_records/2` in the reader: `ExESDB.ReadAhead`). `false` where a
  read depends on the process making it. No errors.
  """
  @callback read_ahead() :: boolean()

  @doc "A stream's version, whether it exists and whether it was deleted."
  @callback stream_info(store(), String.t()) ::
              {:ok, non_neg_integer(), boolean(), boolean()} | {:error, reason()}

  @doc "Up to `count` `{stream_id, version, deleted}` after `after_id` (nil: from the start)."
  @callback list_streams(store(), after_id :: String.t() | nil, count :: pos_integer()) ::
              {:ok, [{String.t(), non_neg_integer(), boolean()}]} | {:error, reason()}

  @doc """
  A snapshot as `{uuid, version, type, data, metadata, created_us}`, its
  payloads `{:term, bin}`, `{:legacy, bin}` or bytes. Errors:
  `:snapshot_not_found`.
  """
  @callback snapshot_get(store(), String.t()) :: {:ok, tuple()} | {:error, reason()}

  @doc """
  A persistent subscription's stored `{name, checkpoint, definition,
  updated_us}`. Errors: `:subscription_not_found`.
  """
  @callback checkpoint_get(store(), String.t()) :: {:ok, tuple()} | {:error, reason()}

  @doc "Up to `count` stored checkpoints (as `c:checkpoint_get/2`'s) after `after_name`."
  @callback checkpoint_list(store(), after_name :: String.t() | nil, count :: pos_integer()) ::
              {:ok, [tuple()]} | {:error, reason()}

  @doc """
  Make `pid` a member of `source`'s subscriber group: every matching event
  committed after the returned position is sent to it. Options: `shape`
  (`:plain`, the default: `{:events, records}`; `:tagged`: `{:events,
  member, records}`, for one process holding several memberships;
  `:ranged`: `{:events, records, since}`, for a subscriber that must see
  gaps), `credit` (`:infinity`, the default, or how many events it may
  be sent before `c:grant/3`; a commit past it ends the membership with
  `{:subscription_overflow, {:transient, member}, first_dropped}`),
  `format` (`{module, decode}`: the records' struct and whether term
  payloads are decoded; default the store's, `ExESDB.EventCodec.format/2`;
  the Erlang API's is `{:ex_esdb_event, false}`). When
  the store closes it gets `{:subscription_down, {:transient, member},
  :closed}`. Errors: `:closed`, `:noproc` (`pid` is not alive),
  `:out_of_memory`.
  """
  @callback subscribe(store(), pid(), source(), opts :: keyword()) ::
              {:ok, member :: non_neg_integer(), last_position :: non_neg_integer()}
              | {:error, reason()}

  @doc "Give a member `n` more credit. Errors: `:subscription_not_found`."
  @callback grant(store(), member :: non_neg_integer(), n :: pos_integer()) ::
              :ok | {:error, reason()}

  @doc "End a membership. Errors: `:subscription_not_found`."
  @callback unsubscribe(store(), member :: non_neg_integer()) :: :ok | {:error, reason()}

  @doc "The store's counters (see `ExESDB.System.stats/1`)."
  @callback stats(store()) :: {:ok, map()} | {:error, reason()}

  @doc "Check every record and index (waits without bound). Errors: `{:corrupt, problems}`."
  @callback verify(store()) :: :ok | {:error, reason()}

  @doc """
  Write a compacted copy into `dest`, absent or empty (waits without
  bound). Errors: `{:invalid_path, dest}`, `:eexist`, `:enotempty`, system errors.
  """
  @callback backup(store(), dest :: binary()) :: :ok | {:error, reason()}

  @doc """
  Events a lazy read (`ExESDB.Streams.stream_forward/4`, ...) asks of one
  page at most, whatever the caller's batch: a number caps the batch
  (where reading in smaller pieces pays), `:infinity` keeps it. No errors.
  """
  @callback read_piece() :: pos_integer() | :infinity

  @doc """
  Where the store's persistent subscriptions run: `:local` (this node's
  subscription supervisor and registry) or a module placing each on one
  node of the cluster (`ExESDB.Subscriptions.Placement`), which
  `ExESDB.Subscriptions` then calls: `subscribe(store, name, selector,
  subscriber, opts)`, `delete(store, name)`, `whereis(store, name)`,
  `running(store)` (`{:ok, names}`) and `detach(store_id, pid,
  subscriber)`; their errors are that module's (`{:not_leader, node}`,
  `:no_quorum`, `{:unreachable, node}`, ...). No errors.
  """
  @callback placement(store()) :: :local | module()

  @doc """
  Return once the store's replica on this node (where its reads go) has
  applied everything its cluster committed before the call
  (`ExESDB.Cluster.barrier/2`), within `store.timeout`. Errors:
  `:not_cluster` (a store on its own), `:timeout` (the barrier went
  through, the replica here did not reach it), `:no_quorum`,
  `{:not_leader, node}`, `{:unreachable, node}`, `:outcome_unknown`.
  """
  @callback barrier(store()) :: :ok | {:error, reason()}

  @doc """
  Decode a stored term with the store's checks (no funs, pids, ports,
  references, unknown atoms or oversized compressed terms). Errors:
  `{:undecodable, reason}`.
  """
  @callback decode_term(binary()) :: {:ok, term()} | {:error, reason()}
end
