package pgcdc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/invalidation/pgcdc"
	"github.com/tiercache/tiercache/tiered"
)

func getenv(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// An UPDATE made in SQL, with no tiercache call, evicts the cached row.
func Example() {
	ctx := context.Background()
	dsn := getenv("TIERCACHE_PGCDC_EXAMPLE_POSTGRES", "postgres://postgres@localhost:5432/postgres?sslmode=disable")
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	_, err = db.Exec(ctx, `CREATE TABLE IF NOT EXISTS example_users (id text PRIMARY KEY, name text NOT NULL);
		INSERT INTO example_users VALUES ('42', 'Ada') ON CONFLICT (id) DO UPDATE SET name = 'Ada'`)
	if err != nil {
		fmt.Println(err)
		return
	}

	rdb := redis.NewClient(&redis.Options{Addr: getenv("TIERCACHE_PGCDC_EXAMPLE_REDIS", "localhost:6379")})
	defer rdb.Close()
	c, err := tiered.NewClient(tiered.Options{Redis: rdb})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	users, err := tiered.NewKeyspace(c, tiered.Config[string]{
		Name:     "example_user",
		LocalTTL: time.Hour, // only an invalidation can make a change visible sooner
		Loader: func(ctx context.Context, id string) (string, error) {
			var name string
			err := db.QueryRow(ctx, `SELECT name FROM example_users WHERE id = $1`, id).Scan(&name)
			if errors.Is(err, pgx.ErrNoRows) {
				return "", tiered.ErrNotFound
			}
			return name, err
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	w, err := pgcdc.Start(ctx, pgcdc.Config{
		ConnString:  dsn,
		Slot:        "example",
		Publication: "example",
		Rules:       []pgcdc.Rule{{Table: "public.example_users", Target: users}}, // ids: the primary key
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()

	name, _ := users.Get(ctx, "42") // loaded and cached for an hour
	fmt.Println(name)
	if _, err := db.Exec(ctx, `UPDATE example_users SET name = 'Grace' WHERE id = '42'`); err != nil {
		fmt.Println(err)
		return
	}
	for deadline := time.Now().Add(10 * time.Second); name != "Grace" && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the eviction takes milliseconds
		name, _ = users.Get(ctx, "42")
	}
	fmt.Println(name)
	// Output:
	// Ada
	// Grace
}
