//! Simple and extended query protocol handlers: each statement is planned and run on
//! the `query` runtime, and its Arrow batches are encoded to PG rows there too; the
//! connection task on `io` only forwards finished rows.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::Schema;
use async_trait::async_trait;
use bulkhead_frontend::{QueryBackend, QueryOutput};
use bulkhead_runtime::{RuntimeName, Runtimes};
use futures::stream::BoxStream;
use futures::{Sink, SinkExt, Stream, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, DEFAULT_NAME, METADATA_DATABASE, METADATA_USER, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::Sync as PgSync;
use pgwire::messages::response::ReadyForQuery;
use tokio::task::JoinHandle;

use crate::cursor::{self, CursorCommand, Cursors};
use crate::error::PgError;
use crate::{catalog, copy, params, session, sql};

/// Rows encoded per message on the channel from `query` to `io` are one batch's worth;
/// this many batches may be buffered.
const BATCH_BUFFER: usize = 2;

/// Runs the statements of every connection.
pub(crate) struct Handler {
    runtimes: Arc<Runtimes>,
    backend: Arc<dyn QueryBackend>,
    parser: Arc<Parser>,
}

impl Handler {
    pub(crate) fn new(runtimes: Arc<Runtimes>, backend: Arc<dyn QueryBackend>) -> Self {
        Self {
            runtimes,
            backend,
            parser: Arc::new(Parser),
        }
    }

    /// Run one statement: a session command is acknowledged, a cursor or `COPY`
    /// statement handled here, a client catalog query answered from Bulkhead's own
    /// catalog, anything else goes to the query layer. `tx` is whether the client is in
    /// a transaction block, updated by `BEGIN` / `COMMIT`.
    pub(crate) async fn execute<C: ClientInfo>(
        &self,
        client: &C,
        tx: &mut bool,
        db: &str,
        stmt: &str,
        format: &Format,
    ) -> Result<Response, PgError> {
        tracing::debug!(db, stmt, "PG statement");
        if let Some(tag) = session::set_command(stmt)? {
            return Ok(Response::Execution(Tag::new(tag)));
        }
        if let Some((tag, kind)) = sql::session_command(stmt) {
            return Ok(match kind {
                sql::Session::Other => Response::Execution(Tag::new(tag)),
                sql::Session::Begin => {
                    *tx = true;
                    Response::TransactionStart(Tag::new(tag))
                }
                sql::Session::End => {
                    *tx = false;
                    Cursors::of(client).end_transaction().await;
                    Response::TransactionEnd(Tag::new(tag))
                }
            });
        }
        if let Some(command) = cursor::parse(stmt) {
            return self.cursor(client, *tx, db, command?, format).await;
        }
        if let Some(copy) = copy::parse(stmt) {
            let copy = copy?;
            let output = self.run(db, &copy.query).await?;
            let response =
                copy::respond(&self.runtimes, &copy.format, output.schema, output.batches)?;
            return Ok(Response::CopyOut(response));
        }
        if let Some(answer) = catalog::show(db, stmt) {
            return Ok(answer.into_response(format));
        }
        if let Some(answer) = catalog::answer(self, db, stmt).await? {
            return Ok(answer.into_response(format));
        }
        let output = self.run(db, stmt).await?;
        self.respond(output, format)
    }

    async fn cursor<C: ClientInfo>(
        &self,
        client: &C,
        tx: bool,
        db: &str,
        command: CursorCommand,
        format: &Format,
    ) -> Result<Response, PgError> {
        let cursors = Cursors::of(client);
        match command {
            CursorCommand::Declare {
                name,
                query,
                hold,
                binary: _,
            } => {
                if !hold && !tx {
                    return Err(PgError::NoTransaction);
                }
                let output = self.run(db, &query).await?;
                cursors.declare(name, query, hold, output).await?;
                Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
            }
            CursorCommand::Fetch { name, count } => cursors.fetch(&name, count, format).await,
            CursorCommand::Close(name) => {
                cursors.close(name.as_deref()).await?;
                Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
            }
        }
    }

    /// The result columns `stmt` would have, without side effects: a statement that
    /// changes something (`DELETE`, `DROP`, `CREATE`/`DROP ROLLUP`) has the columns its
    /// execution answers with, found by parsing it only; a query's come from planning
    /// it (then dropping it, which aborts the query task before it does real work); a
    /// `FETCH` has its cursor's columns; other commands have none (and are not run).
    async fn describe<C: ClientInfo>(
        &self,
        client: &C,
        db: &str,
        stmt: &str,
        format: &Format,
    ) -> Result<Vec<FieldInfo>, PgError> {
        let query = match cursor::parse(stmt) {
            Some(Ok(CursorCommand::Fetch { name, .. })) => Cursors::of(client)
                .query(&name)
                .await
                .ok_or(PgError::NoSuchCursor(name))?,
            Some(_) => return Ok(Vec::new()),
            None if copy::parse(stmt).is_some() || sql::session_command(stmt).is_some() => {
                return Ok(Vec::new());
            }
            None => stmt.to_owned(),
        };
        if let Some(schema) = self.backend.describe_without_running(db, &query) {
            return pg_fields(schema?.as_ref(), format);
        }
        let mut tx = true;
        match self.execute(client, &mut tx, db, &query, format).await? {
            Response::Query(q) => Ok(q.row_schema().as_ref().clone()),
            _ => Ok(Vec::new()),
        }
    }

    /// Plan and start `stmt` on the `query` runtime, under the session's timeout.
    pub(crate) async fn run(&self, db: &str, stmt: &str) -> Result<QueryOutput, PgError> {
        let backend = Arc::clone(&self.backend);
        let (db, stmt) = (db.to_owned(), stmt.to_owned());
        let deadline = session::deadline();
        let planning = self.runtimes.run(RuntimeName::Query, async move {
            backend.pg_sql(&db, &stmt).await
        });
        let output = deadline
            .plan(planning)
            .await
            .inspect_err(|_| session::trip_timeout())???;
        Ok(deadline.bound(output))
    }

    /// Run `stmt` and collect its (small) result, all on `query`: for catalog answers.
    pub(crate) async fn collect(
        &self,
        db: &str,
        stmt: &str,
    ) -> Result<Vec<arrow::array::RecordBatch>, PgError> {
        let backend = Arc::clone(&self.backend);
        let (db, stmt) = (db.to_owned(), stmt.to_owned());
        self.runtimes
            .run(RuntimeName::Query, async move {
                let mut batches = backend.pg_sql(&db, &stmt).await?.batches;
                let mut out = Vec::new();
                while let Some(batch) = batches.next().await {
                    out.push(batch.map_err(|e| PgError::Stream(e.to_string()))?);
                }
                Ok(out)
            })
            .await?
    }

    fn respond(&self, output: QueryOutput, format: &Format) -> Result<Response, PgError> {
        let fields = Arc::new(pg_fields(&output.schema, format)?);
        let rows = session::cancellable(encode_on_query(
            &self.runtimes,
            output.batches,
            Arc::clone(&fields),
        ));
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }
}

/// PG column descriptions of an Arrow schema (see `docs/protocols.md` for the mapping).
pub(crate) fn pg_fields(schema: &Schema, format: &Format) -> Result<Vec<FieldInfo>, PgError> {
    arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format, None)
        .map_err(|e| PgError::Encode(e.to_string()))
}

/// Encode `batches` into PG rows on the `query` runtime and stream them to the caller.
/// Dropping the stream (client gone, portal closed) aborts the encoding task, which
/// drops the query stream and so cancels the query.
fn encode_on_query(
    runtimes: &Runtimes,
    batches: BoxStream<'static, Result<arrow::array::RecordBatch, arrow::error::ArrowError>>,
    fields: Arc<Vec<FieldInfo>>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    // `None` marks the clean end: a channel that closes without it means the task died.
    let (mut tx, rx) =
        futures::channel::mpsc::channel::<Option<Vec<PgWireResult<DataRow>>>>(BATCH_BUFFER);
    let task = runtimes.spawn(RuntimeName::Query, async move {
        let mut batches = batches;
        while let Some(batch) = batches.next().await {
            let rows: Vec<_> = match batch {
                Ok(batch) => {
                    arrow_pg::datatypes::encode_recordbatch(Arc::clone(&fields), batch).collect()
                }
                Err(e) => vec![Err(PgError::from_stream(e).into_pgwire())],
            };
            let failed = rows.iter().any(Result::is_err);
            if tx.send(Some(rows)).await.is_err() || failed {
                return;
            }
        }
        let _ = tx.send(None).await;
    });
    relay(rx, task)
}

/// The connection's side of a result produced by a task on `query`: the items of each
/// chunk in order, then the end; an error if the task ended without its clean-end
/// marker (`None`). Dropping the stream aborts the task.
pub(crate) fn relay<T: Send + 'static>(
    rx: futures::channel::mpsc::Receiver<Option<Vec<PgWireResult<T>>>>,
    task: JoinHandle<()>,
) -> impl Stream<Item = PgWireResult<T>> + Send + 'static {
    let state = (rx, AbortOnDrop(task), false);
    futures::stream::unfold(state, |(mut rx, guard, done)| async move {
        if done {
            return None;
        }
        match rx.next().await {
            Some(Some(items)) => Some((futures::stream::iter(items), (rx, guard, false))),
            Some(None) => None,
            None => {
                let err =
                    PgError::Stream("the query task ended before its result was complete".into());
                Some((
                    futures::stream::iter(vec![Err(err.into_pgwire())]),
                    (rx, guard, true),
                ))
            }
        }
    })
    .flatten()
}

pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The Bulkhead database a connection works in: its `database` startup parameter,
/// defaulting to the user name as in PostgreSQL.
fn database<C: ClientInfo>(client: &C) -> String {
    let meta = client.metadata();
    meta.get(METADATA_DATABASE)
        .or_else(|| meta.get(METADATA_USER))
        .cloned()
        .unwrap_or_else(|| "public".to_owned())
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let db = database(client);
        let mut responses = Vec::new();
        let mut tx = cursor::in_transaction(client);
        for stmt in sql::split_statements(query) {
            match self
                .execute(client, &mut tx, &db, &stmt, &Format::UnifiedText)
                .await
            {
                Ok(response) => responses.push(response),
                Err(e) => {
                    // Like PostgreSQL: the failing statement ends the query string.
                    responses.push(Response::Error(Box::new(error_info(e))));
                    break;
                }
            }
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        // The statements are planned; their rows stream from here, each watching for
        // cancel requests itself.
        session::end_query_cycle();
        Ok(responses)
    }
}

fn error_info(e: PgError) -> pgwire::error::ErrorInfo {
    match e.into_pgwire() {
        PgWireError::UserError(info) => *info,
        other => pgwire::error::ErrorInfo::new("ERROR".into(), "XX000".into(), other.to_string()),
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = String;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    /// pgwire's own Sync handling, after ending the session's query cycle: a cancel
    /// request is meant for the statements up to Sync (see `session::cancellable`).
    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        session::end_query_cycle();
        client.portal_store().rm_portal(DEFAULT_NAME);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                client.transaction_status(),
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let db = database(client);
        let stmt = params::bind(portal)?;
        let mut tx = cursor::in_transaction(client);
        let response = self
            .execute(client, &mut tx, &db, &stmt, &portal.result_column_format)
            .await?;
        // A declared cursor is also a portal of the protocol: psycopg describes it by
        // name (Describe Portal) to learn its columns.
        if let Some(Ok(CursorCommand::Declare { name, query, .. })) = cursor::parse(&stmt) {
            let statement = Arc::new(StoredStatement::new(name.clone(), query, Vec::new()));
            client
                .portal_store()
                .put_portal(Arc::new(Portal::new_cursor(name, statement)));
        }
        Ok(response)
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let db = database(client);
        let count = sql::parameter_count(&target.statement)?;
        // Parameter types: the client's where it gave them, else `unknown` (the client
        // then sends text, which is substituted as a literal).
        let types = (0..count.max(target.parameter_types.len()))
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or(Type::UNKNOWN)
            })
            .collect::<Vec<_>>();
        let stmt = params::bind_nulls(&target.statement, count)?;
        let fields = self
            .describe(client, &db, &stmt, &Format::UnifiedText)
            .await?;
        if types.is_empty() && fields.is_empty() {
            return Ok(DescribeStatementResponse::no_data());
        }
        Ok(DescribeStatementResponse::new(types, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let db = database(client);
        let stmt = params::bind(portal)?;
        let fields = self
            .describe(client, &db, &stmt, &portal.result_column_format)
            .await?;
        if fields.is_empty() {
            return Ok(DescribePortalResponse::no_data());
        }
        Ok(DescribePortalResponse::new(fields))
    }
}

/// Statements are kept as SQL text; planning happens at describe / execute time, when
/// the parameters are known.
#[derive(Debug)]
pub(crate) struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = String;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut stmts = sql::split_statements(sql);
        match stmts.len() {
            0 => Ok(None),
            1 => {
                // Refuse a `$n` past the limit at Parse, as PostgreSQL does, before
                // Describe or Bind size anything from it.
                sql::parameter_count(&stmts[0])?;
                Ok(stmts.pop())
            }
            _ => Err(PgError::Parameter(
                "cannot insert multiple commands into a prepared statement".into(),
            )
            .into_pgwire()),
        }
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        Ok(vec![Type::UNKNOWN; sql::parameter_count(stmt)?])
    }

    fn get_result_schema(
        &self,
        _stmt: &Self::Statement,
        _column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        // Never used: the handler's describe methods plan the statement themselves.
        Ok(Vec::new())
    }
}
